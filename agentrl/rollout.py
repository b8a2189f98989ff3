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

from agentrl.config import ConfigError, on_off, option, require
from agentrl.types import Episode, Step, episode_id

ENV_IDS = {"alfworld": "agentrl/ALFWorld-v0", "textworld": "agentrl/TextWorld-v0", "math": "agentrl/Math-v0"}
BACKENDS = ("transformers", "openai", "vllm")
POLICY_CHOICES = ("react", "expert", "random", "best_of_k")

OnStep = Callable[[int, Any, Any, Any], None]


@dataclass
class RolloutConfig:
    """Run a policy in parallel environments and write one trajectory JSONL line per finished episode."""

    env: str = option("alfworld", help="environment: alfworld, textworld or math")
    out: str = option("", help="output trajectory file (JSONL); must be new or empty unless --resume")
    policy: str = option("react", help="policy: react (LLM), expert, random")
    data: str | None = option(None, help="alfworld: data root holding json_2.1.1/<split>/...")
    split: str = option("train", help="alfworld/math: split (train, valid_seen, valid_unseen / train, test)")
    dataset: str | None = option(None, help="math: dataset name (gsm8k-test-100, gsm-symbolic, chain-sum, jsonl:PATH)")
    problems: int = option(1000, help="math: problems a generator dataset (gsm-symbolic, chain-sum) makes per split")
    games: str | None = option(None, help="textworld: game file or folder")
    model: str = option("default", help="model: local folder, hub name, LoRA adapter folder, or `default`")
    backend: str = option("transformers", help="generation backend: transformers, openai, vllm")
    base_url: str | None = option(None, help="openai backend: endpoint, e.g. http://127.0.0.1:8000/v1")
    episodes: int | None = option(None, help="number of episodes (default: every task x samples-per-task)")
    samples_per_task: int = option(1, help="episodes per task (sample index s0, s1, ...)")
    num_envs: int = option(1, help="parallel environments (worker processes)")
    max_steps: int = option(40, help="step cap per episode (then truncated)")
    temperature: float = option(0.0, help="sampling temperature (0 = greedy)")
    top_p: float = option(1.0, help="nucleus sampling mass")
    max_new_tokens: int = option(128, help="token cap per assistant turn")
    history: int | None = option(None, help="prompt keeps only the last N turns (default: full history)")
    example: bool = option(True, help="put the in-context example in the system prompt")
    thoughts: str = option("on", help="on: turns are `Think: ...` + `Action: ...`; off: thought-free `Action: ...` turns")
    action_space: str | None = option(None, help="free: the model writes its command; admissible: the command is chosen among the env's admissible ones (default: free)")
    choice_score: str = option("mean", help="admissible: rank commands by mean (length-normalised) or sum log-prob")
    seed: int = option(0, help="seed for env resets and sampling")
    resume: bool = option(False, help="append to --out, skipping episode ids already in it")
    device: str = option("cpu", help="transformers backend: torch device (cpu, cuda)")
    dtype: str = option("float32", help="transformers backend: float32, bfloat16 or float16")
    carry_cache: bool = option(True, help="transformers backend: keep each env's KV cache across turns")
    step_timeout: float = option(60.0, help="seconds before a hung env step/reset marks its episode `error`")
    progress: bool = option(True, help="show the rich progress bar and summary table")

    def __post_init__(self) -> None:
        require(self.env in ENV_IDS, f"`env` must be one of {', '.join(ENV_IDS)}, got {self.env!r}")
        require(
            self.policy in POLICY_CHOICES,
            f"`policy` must be one of {', '.join(POLICY_CHOICES)}, got {self.policy!r}",
        )
        require(
            self.backend in BACKENDS, f"`backend` must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
        )
        require(
            bool(self.out), "`out` is required: the trajectory file to write (e.g. --out runs/expert.jsonl)"
        )
        require(self.episodes is None or self.episodes >= 1, f"`episodes` must be >= 1, got {self.episodes}")
        require(self.samples_per_task >= 1, f"`samples_per_task` must be >= 1, got {self.samples_per_task}")
        require(self.num_envs >= 1, f"`num_envs` must be >= 1, got {self.num_envs}")
        require(self.max_steps >= 1, f"`max_steps` must be >= 1, got {self.max_steps}")
        require(self.temperature >= 0, f"`temperature` must be >= 0, got {self.temperature}")
        require(0 < self.top_p <= 1, f"`top_p` must be in (0, 1], got {self.top_p}")
        require(self.max_new_tokens >= 1, f"`max_new_tokens` must be >= 1, got {self.max_new_tokens}")
        require(self.history is None or self.history >= 0, f"`history` must be >= 0, got {self.history}")
        self.thoughts = on_off(self.thoughts, "thoughts")
        check_action_options(self.action_space, self.choice_score, self.env)
        require(self.step_timeout > 0, f"`step_timeout` must be > 0, got {self.step_timeout}")
        require(
            self.dtype in ("float32", "bfloat16", "float16"),
            f"`dtype` must be float32/bfloat16/float16, got {self.dtype!r}",
        )
        if self.env == "alfworld":
            require(
                self.data is not None,
                "alfworld needs `data`: an ALFWorld root (make one: agentrl gen alfworld)",
            )
            require(Path(str(self.data)).is_dir(), f"`data`: no such folder: {self.data}")
        if self.env == "textworld":
            require(
                self.games is not None,
                "textworld needs `games`: a game file or folder (agentrl gen textworld)",
            )
            require(Path(str(self.games)).exists(), f"`games`: no such file or folder: {self.games}")
        if self.env == "math":
            self.dataset = self.dataset or "gsm8k-test-100"
            require(self.problems >= 1, f"`problems` must be >= 1, got {self.problems}")
            if self.dataset.startswith("jsonl:"):
                require(Path(self.dataset[6:]).is_file(), f"`dataset`: no such file: {self.dataset[6:]}")
        if self.policy == "random":
            require(
                self.env != "math", "the random policy needs admissible actions, which math problems lack"
            )
        if self.backend == "vllm" and self.uses_model:
            import importlib.util

            from agentrl.backends.vllm_backend import INSTALL_HINT

            require(importlib.util.find_spec("vllm") is not None, INSTALL_HINT)
        if self.backend == "openai" and self.policy in ("react", "best_of_k"):
            require(
                self.base_url is not None,
                "the openai backend needs `base_url` (e.g. http://127.0.0.1:8000/v1)",
            )

    @property
    def uses_model(self) -> bool:
        return self.policy in ("react", "best_of_k")

    @property
    def actions(self) -> str:
        """The action space in force: ``free`` or ``admissible``."""
        return self.action_space or "free"

    @property
    def with_thoughts(self) -> bool:
        """Assistant turns carry a ``Think:`` line (``--thoughts on``)."""
        return self.thoughts == "on"

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make(ENV_IDS[env], ...)``."""
        kwargs: dict[str, Any] = {"max_episode_steps": self.max_steps}
        if self.env == "alfworld":
            kwargs.update(data=str(self.data), split=self.split)
        elif self.env == "textworld":
            kwargs.update(games=str(self.games))
        else:
            kwargs.update(dataset=self.dataset, split=self.split, size=self.problems)
        return kwargs


def check_action_options(action_space: str | None, choice_score: str, env: str) -> None:
    """Config check of ``--action-space`` / ``--choice-score`` (shared by rollout and eval).

    Raises:
        ConfigError: an unknown value, or ``admissible`` on math (problems list no admissible commands).
    """
    from agentrl.backends.base import CHOICE_SCORES
    from agentrl.policies.action_space import ACTION_SPACES

    require(action_space is None or action_space in ACTION_SPACES,
            f"`action_space` must be one of {', '.join(ACTION_SPACES)}, got {action_space!r}")
    require(choice_score in CHOICE_SCORES, f"`choice_score` must be one of {', '.join(CHOICE_SCORES)}, got {choice_score!r}")
    require(not (action_space == "admissible" and env == "math"),
            "math problems list no admissible commands: use --action-space free")


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


def make_generator(cfg: RolloutConfig) -> Any:
    """The generation backend ``cfg.backend`` for ``cfg.model``."""
    if cfg.backend == "transformers":
        from agentrl.backends.transformers_backend import TransformersBackend

        return TransformersBackend.from_pretrained(
            cfg.model, device=cfg.device, dtype=cfg.dtype, carry_cache=cfg.carry_cache
        )
    if cfg.backend == "openai":
        from agentrl.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(base_url=str(cfg.base_url), model=cfg.model)
    from agentrl.backends.vllm_backend import VLLMBackend

    return VLLMBackend(cfg.model, seed=cfg.seed)


def make_pool(cfg: RolloutConfig) -> Any:
    """The env worker pool (``agentrl.envs.workers.EnvPool``) for ``cfg``."""
    try:
        from agentrl.envs.workers import EnvPool
    except ImportError as err:  # pragma: no cover - depends on the envs package being installed
        raise ConfigError(f"cannot import the env workers (agentrl.envs.workers): {err}") from None
    return EnvPool(ENV_IDS[cfg.env], cfg.env_kwargs(), cfg.num_envs, step_timeout=cfg.step_timeout)


def _meta(cfg: RolloutConfig, sample: int, generator: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"sample": sample, "seed": cfg.seed, "max_steps": cfg.max_steps,
                            "thoughts": cfg.with_thoughts, "action_space": cfg.actions}
    if cfg.actions == "admissible":
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
            history=cfg.history,
            example=cfg.example,
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
            ``(observation, reward, terminated, truncated, info)`` or an ``EnvError`` (for live views).
        pool: an env pool with the ``EnvPool`` API (default: worker processes from ``agentrl.envs.workers``).
        policy: a policy (default: ``make_policy(cfg.policy, ...)``).
        generator: a generation backend for model policies (default: from ``cfg.backend`` and ``cfg.model``).
        summary_table: print the per-task-type table at the end (with ``cfg.progress``); callers that print
            their own results table (``agentrl eval``) turn it off.

    Raises:
        ConfigError: the output exists and is non-empty without ``resume``; more episodes than tasks x samples;
            the policy cannot run in this env (e.g. no expert actions).
    """
    from agentrl.policies import make_policy
    from agentrl.trajectory import TrajectoryError, TrajectoryWriter, finished_ids

    out = Path(cfg.out)
    if out.exists() and out.stat().st_size > 0 and not cfg.resume:
        raise ConfigError(
            f"{out} exists and is not empty; pass --resume to continue it or choose another --out"
        )
    with contextlib.ExitStack() as stack:
        try:
            writer = stack.enter_context(TrajectoryWriter(out))  # locks `out` before reading what is done
            done_ids = finished_ids(out) if cfg.resume else set()
        except TrajectoryError as err:  # another writer, or a damaged line that is not a crash's torn tail
            raise ConfigError(f"cannot write {out}: {err}") from None
        if pool is None:
            pool = stack.enter_context(contextlib.closing(make_pool(cfg)))
        plan = plan_episodes(list(pool.task_ids), cfg.samples_per_task, cfg.episodes)
        todo = deque(
            (i, task, s)
            for i, (task, s) in enumerate(plan)
            if episode_id(cfg.env, cfg.split, task, s) not in done_ids
        )
        if policy is None:
            if cfg.uses_model and generator is None:
                generator = make_generator(cfg)
            from agentrl.backends.base import Sampling

            sampling = Sampling(
                temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                choice_score=cfg.choice_score,
            )
            policy = make_policy(
                cfg.policy,
                generator=generator,
                sampling=sampling,
                history=cfg.history,
                example=cfg.example,
                thoughts=cfg.with_thoughts,
                action_space=cfg.actions,
                seed=cfg.seed,
            )
        run = _Run(
            cfg, pool, policy, writer, generator, on_step, total=len(plan), skipped=len(plan) - len(todo)
        )
        run.loop(todo)
        summary = run.summary()
    if cfg.progress and summary_table:
        print_summary(out)
    return summary


class _Run:
    """State of one rollout run (kept out of ``rollout`` so the loop reads top to bottom)."""

    def __init__(self, cfg, pool, policy, writer, generator, on_step, total: int, skipped: int):
        self.cfg, self.pool, self.policy, self.writer = cfg, pool, policy, writer
        self.generator, self.on_step = generator, on_step
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
                        episode.context = self.policy.begin(slot, observation, info, self.cfg.env)
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
                        )
                    )
                    episode.reward += float(reward)
                    episode.info = info
                    self.policy.observe(episode.context, decision, observation, info)
                    if terminated or truncated or len(episode.steps) >= self.cfg.max_steps:
                        self._end(episode, truncated=not terminated)
                        del active[slot]
                        free.append(slot)
                progress.update(bar, completed=self.skipped + self.written, **self._fields())

    # -- bookkeeping --------------------------------------------------------------------------------------

    def _end(self, episode: _Active, error: str | None = None, truncated: bool = False) -> None:
        end = getattr(self.policy, "end", None)
        if end is not None and episode.context is not None:
            end(episode.context)
        self._finish(episode, error=error, truncated=truncated)

    def _finish(self, episode: _Active, error: str | None = None, truncated: bool = False) -> None:
        info = episode.info
        meta = _meta(self.cfg, episode.sample, self.generator)
        meta.update(truncated=truncated, seconds=round(time.perf_counter() - episode.started, 3))
        if episode.steps:
            meta["invalid_steps"] = sum(not s.valid for s in episode.steps)
        task_type = str(info.get("task_type") or "unknown")
        record = Episode(
            episode_id=episode.eid,
            task_id=episode.task_id,
            env_id=ENV_IDS[self.cfg.env],
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
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

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
    from rich.console import Console
    from rich.table import Table

    from agentrl.trajectory import read_episodes

    table = Table(title=f"rollout: {path}")
    for column in ("task type", "episodes", "success", "rate", "errors", "mean steps"):
        table.add_column(column, justify="left" if column == "task type" else "right")
    for name, n, ok, errors, steps in summary_rows(read_episodes(path)):
        table.add_row(name, str(n), str(ok), f"{ok / n:.1%}", str(errors), f"{steps:.1f}")
    Console().print(table)
