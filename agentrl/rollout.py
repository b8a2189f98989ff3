"""The rollout engine: E envs in worker processes, one batched policy call per tick, crash-safe JSONL output.

Episodes are assigned deterministically: the task list (``env.unwrapped.task_ids``, sorted) crossed with the
sample index, in that order, cut at ``episodes``; each gets ``agentrl.types.episode_id(env, split, task, s)``.
Each finished episode is appended to ``out`` as one fsync'd JSONL line, so ``kill -9`` loses only the episodes
in flight and ``resume`` skips every id already in the file. An env that raises or exceeds its step timeout
ends its episode with ``error`` set (recorded, counted, never retried) and the run goes on.

Each tick: free slots are reset with the next pending episodes, every active context goes through one
``policy.act`` call (one batched model call), the actions go to the pool in one ``step`` call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from agentrl.agent_format import AgentFormat
from agentrl.build import build_generator, build_policy, build_pool
from agentrl.config import ConfigError, option, require
from agentrl.options import RunOptions
from agentrl.policies.action_space import with_admissible_list
from agentrl.replay import LiveView
from agentrl.trajectory import TrajectoryError, TrajectoryWriter, finished_ids, read_episodes
from agentrl.types import Episode, Step, episode_id

OnStep = Callable[[int, Any, Any, Any], None]


@dataclass
class RolloutConfig(RunOptions):
    """Run a policy in parallel environments and write one trajectory JSONL line per finished episode."""

    out: str = option("", help="output trajectory file (JSONL); must be new or empty unless --resume")
    episodes: int | None = option(None, help="number of episodes (default: every task x samples-per-task)")
    samples_per_task: int = option(1, help="episodes per task (sample index s0, s1, ...)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.episodes is None or self.episodes >= 1, f"`episodes` must be >= 1, got {self.episodes}")
        require(self.samples_per_task >= 1, f"`samples_per_task` must be >= 1, got {self.samples_per_task}")


@dataclass
class _Active:
    """An episode in flight in one slot."""

    eid: str
    task_id: str
    sample: int
    context: Any = None
    steps: list[Step] = dataclasses.field(default_factory=list)
    reward: float = 0.0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.perf_counter)


def plan_episodes(task_ids: list[str], samples: int, episodes: int | None) -> list[tuple[str, int]]:
    """Task order x sample index: ``[(t0, 0), (t0, 1), ..., (t1, 0), ...]``, cut at ``episodes``."""
    plan = [(task, s) for task in task_ids for s in range(samples)]
    if episodes is not None:
        if episodes > len(plan):
            raise ConfigError(
                f"`episodes` is {episodes} but there are only {len(task_ids)} tasks x {samples} samples = "
                f"{len(plan)} episodes (raise --samples-per-task or generate more tasks)"
            )
        plan = plan[:episodes]
    return plan


def _meta(cfg: RolloutConfig, sample: int, fmt: AgentFormat) -> dict[str, Any]:
    meta: dict[str, Any] = {"sample": sample, "seed": cfg.seed, "max_steps": cfg.max_steps,
                            "agent": fmt.to_dict(), "action_space": fmt.action_space}
    if fmt.action_space == "admissible":
        meta["choice_score"] = cfg.choice_score
    if cfg.uses_model:
        meta.update(
            model=cfg.model,
            backend=cfg.backend,
            sampling={
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
                "max_new_tokens": cfg.max_new_tokens,
            },
            history=fmt.history,
            example=fmt.example,
        )
        if cfg.backend == "transformers":
            meta.update(device=cfg.device, dtype=cfg.dtype)
    return meta


def rollout(
    cfg: RolloutConfig,
    on_step: OnStep | None = None,
    *,
    pool: Any = None,
    policy: Any = None,
    generator: Any = None,
    summary_table: bool = True,
) -> dict[str, Any]:
    """Runs the episodes of ``cfg`` and appends them to ``cfg.out``; returns a summary dict.

    Args:
        cfg: the run's configuration.
        on_step: called after every env step as ``on_step(slot, context, decision, result)`` where ``result`` is
            ``(observation, reward, terminated, truncated, info)`` or an ``EnvError`` (for live views); default
            with ``cfg.live``: a :class:`~agentrl.replay.LiveView` of slot ``cfg.live_slot``.
        pool: an env pool with the ``EnvPool`` API (default: worker processes from ``agentrl.envs.workers``).
        policy: a policy (default: :func:`agentrl.build.build_policy` of ``cfg`` and ``generator``).
        generator: the generation backend of a model policy (default: built from ``cfg``'s model options).
        summary_table: print the per-task-type table at the end (with ``cfg.progress``); callers that print
            their own results table (``agentrl eval``) turn it off.

    Raises:
        ConfigError: the output exists and is non-empty without ``resume``; more episodes than tasks x samples;
            the policy cannot run in this env (e.g. no expert actions).
        EnvBuildError: the env cannot be made (bad dataset, corrupt file, ...).
    """
    out = Path(cfg.out)
    if out.exists() and out.stat().st_size > 0 and not cfg.resume:
        raise ConfigError(f"{out} exists and is not empty; pass --resume to continue it or choose another --out")
    if on_step is None and cfg.live:
        on_step = LiveView(slot=cfg.live_slot, max_steps=cfg.max_steps)
    with contextlib.ExitStack() as stack:
        try:
            writer = stack.enter_context(TrajectoryWriter(out))  # locks `out` before reading what is done
            done_ids = finished_ids(out) if cfg.resume else set()
        except TrajectoryError as err:  # another writer, or a damaged line that is not a crash's torn tail
            raise ConfigError(f"cannot write {out}: {err}") from None
        if pool is None:
            pool = stack.enter_context(contextlib.closing(build_pool(cfg)))
        plan = plan_episodes(list(pool.task_ids), cfg.samples_per_task, cfg.episodes)
        todo = deque(
            (i, task, s) for i, (task, s) in enumerate(plan) if episode_id(cfg.env, cfg.split, task, s) not in done_ids
        )
        if policy is None:
            if cfg.uses_model and generator is None:
                generator = build_generator(cfg, seed=cfg.seed)
            policy = build_policy(cfg, generator)
        fmt = cfg.agent_format(generator)  # what the policy was built with, recorded in each episode's meta
        run = _Run(cfg, pool, policy, writer, fmt, on_step, total=len(plan), skipped=len(plan) - len(todo))
        run.loop(todo)
        summary = run.summary()
    if cfg.progress and summary_table:
        print_summary(out)
    return summary


class _Run:
    """State of one rollout run (kept out of ``rollout`` so the loop reads top to bottom)."""

    def __init__(self, cfg, pool, policy, writer, fmt, on_step, total: int, skipped: int):
        self.cfg, self.pool, self.policy, self.writer = cfg, pool, policy, writer
        self.fmt, self.on_step = fmt, on_step
        self.total, self.skipped = total, skipped
        self.written = self.successes = self.errors = self.env_steps = self.tokens = 0
        self.by_type: Counter[str] = Counter()
        self.started = time.perf_counter()

    # -- the loop ---------------------------------------------------------------------------------------

    def loop(self, todo: deque) -> None:
        active: dict[int, _Active] = {}
        free = list(range(self.cfg.num_envs))
        with self._progress() as progress:
            bar = progress.add_task("rollout", total=self.total, completed=self.skipped, **self._fields())
            while todo or active:
                # 1. Reset free slots with the next episodes.
                resets: dict[int, dict[str, Any]] = {}
                starting: dict[int, _Active] = {}
                while free and todo:
                    index, task, sample = todo.popleft()
                    slot = free.pop(0)
                    eid = episode_id(self.cfg.env, self.cfg.split, task, sample)
                    starting[slot] = _Active(eid=eid, task_id=task, sample=sample)
                    resets[slot] = {"seed": self.cfg.seed + index, "options": {"task_id": task}}
                for slot, result in (self.pool.reset(resets) if resets else {}).items():
                    episode = starting[slot]
                    if _is_env_error(result):
                        self._finish(episode, error=_error_text("reset", result))
                        free.append(slot)
                        continue
                    observation, info = result
                    episode.info = info
                    try:
                        episode.context = self.policy.begin(slot, self._shown(observation, info), info, self.cfg.env)
                    except LookupError as err:  # e.g. the expert policy in an env without expert actions
                        raise ConfigError(str(err)) from None
                    episode.context.memory.setdefault("episode_id", episode.eid)
                    active[slot] = episode
                progress.update(bar, completed=self.skipped + self.written, **self._fields())
                if not active:
                    continue

                # 2. One batched policy call for every active env.
                slots = sorted(active)
                contexts = [active[s].context for s in slots]
                decisions = self.policy.act(contexts)
                self.tokens += sum(d.new_tokens for d in decisions)

                # 3. One pool step for all of them.
                results = self.pool.step({s: d.action for s, d in zip(slots, decisions, strict=True)})
                for slot, decision in zip(slots, decisions, strict=True):
                    episode = active[slot]
                    result = results[slot]
                    if self.on_step is not None:
                        self.on_step(slot, episode.context, decision, result)
                    if _is_env_error(result):
                        self._end(episode, error=_error_text("step", result))
                        del active[slot]
                        free.append(slot)
                        continue
                    observation, reward, terminated, truncated, info = result
                    self.env_steps += 1
                    episode.steps.append(
                        Step(
                            observation=episode.context.observation,
                            action=decision.action,
                            thought=decision.thought,
                            reward=float(reward),
                            value=decision.value,
                            candidates=decision.candidates,
                            valid=decision.valid,
                            label=decision.label,
                            masked=decision.masked,
                        )
                    )
                    episode.reward += float(reward)
                    episode.info = info
                    self.policy.observe(episode.context, decision, self._shown(observation, info), info)
                    if terminated or truncated or len(episode.steps) >= self.cfg.max_steps:
                        self._end(episode, truncated=not terminated)
                        del active[slot]
                        free.append(slot)
                progress.update(bar, completed=self.skipped + self.written, **self._fields())

    def _shown(self, observation: str, info: dict[str, Any]) -> str:
        """What the policy sees: the observation, and with ``list_admissible`` (the flag, else the model's agent
        format) the admissible commands."""
        return with_admissible_list(observation, info) if self.fmt.list_admissible else observation

    # -- bookkeeping --------------------------------------------------------------------------------------

    def _end(self, episode: _Active, error: str | None = None, truncated: bool = False) -> None:
        if episode.context is not None:
            self.policy.end(episode.context)
        self._finish(episode, error=error, truncated=truncated)

    def _finish(self, episode: _Active, error: str | None = None, truncated: bool = False) -> None:
        info = episode.info
        meta = _meta(self.cfg, episode.sample, self.fmt)
        meta.update(truncated=truncated, seconds=round(time.perf_counter() - episode.started, 3))
        if episode.steps:
            meta["invalid_steps"] = sum(not s.valid for s in episode.steps)
        episode_meta = getattr(self.policy, "episode_meta", None)  # e.g. DAgger's label counts
        if episode_meta is not None and episode.context is not None:
            meta.update(episode_meta(episode.context))
        task_type = str(info.get("task_type") or "unknown")
        record = Episode(
            episode_id=episode.eid,
            task_id=episode.task_id,
            env_id=self.cfg.env_id,
            split=self.cfg.split,
            task_type=task_type,
            policy=getattr(self.policy, "name", self.cfg.policy),
            success=bool(info.get("won", False)) and error is None,
            reward=episode.reward,
            steps=episode.steps,
            messages=list(episode.context.messages) if episode.context is not None else [],
            error=error,
            meta=meta,
        )
        self.writer.write(record)
        self.written += 1
        self.successes += int(record.success)
        self.errors += int(error is not None)
        self.by_type[task_type] += 1

    def _fields(self) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.successes / self.written if self.written else 0.0
        return {
            "success": f"{rate:.0%}",
            "sps": f"{self.env_steps / elapsed:.1f}",
            "tps": f"{self.tokens / elapsed:.0f}",
            "errors": self.errors,
        }

    def _progress(self) -> Any:

        return Progress(
            TextColumn("[bold]rollout"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("success {task.fields[success]}"),
            TextColumn("{task.fields[sps]} steps/s"),
            TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("errors {task.fields[errors]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not self.cfg.progress,
        )

    def summary(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        return {
            "out": str(self.cfg.out),
            "planned": self.total,
            "skipped": self.skipped,
            "written": self.written,
            "successes": self.successes,
            "errors": self.errors,
            "env_steps": self.env_steps,
            "generated_tokens": self.tokens,
            "seconds": elapsed,
            "episodes_per_min": 60 * self.written / elapsed if elapsed > 0 else 0.0,
            "steps_per_s": self.env_steps / elapsed if elapsed > 0 else 0.0,
            "tokens_per_s": self.tokens / elapsed if elapsed > 0 else 0.0,
            "by_task_type": dict(self.by_type),
        }


def _is_env_error(result: Any) -> bool:
    """The pool answers a slot with a tuple, or with an ``EnvError`` (slot, message, timed_out)."""
    return not isinstance(result, tuple)


def _error_text(where: str, err: Any) -> str:
    kind = "timeout" if getattr(err, "timed_out", False) else "error"
    return f"env {kind} during {where}: {getattr(err, 'message', err)}"


def summary_rows(episodes: list[Episode]) -> list[tuple[str, int, int, int, float]]:
    """Per task type: (type, episodes, successes, errors, mean steps), plus an ``all`` row."""
    groups: dict[str, list[Episode]] = {}
    for ep in episodes:
        groups.setdefault(ep.task_type, []).append(ep)
    rows = []
    for name, eps in [*sorted(groups.items()), ("all", episodes)]:
        if not eps:
            continue
        steps = sum(e.num_steps for e in eps) / len(eps)
        rows.append(
            (name, len(eps), sum(e.success for e in eps), sum(e.error is not None for e in eps), steps)
        )
    return rows


def print_summary(path: str | Path) -> None:
    """A rich table of success by task type over every episode in ``path``."""
    table = Table(title=f"rollout: {path}")
    for column in ("task type", "episodes", "success", "rate", "errors", "mean steps"):
        table.add_column(column, justify="left" if column == "task type" else "right")
    for name, n, ok, errors, steps in summary_rows(read_episodes(path)):
        table.add_row(name, str(n), str(ok), f"{ok / n:.1%}", str(errors), f"{steps:.1f}")
    Console().print(table)
