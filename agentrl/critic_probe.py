"""The inputs of the critic report: sibling steps labelled by Monte-Carlo continuations, or read from a file.

``agentrl critic-report`` (:class:`CriticReportConfig`, :func:`critic_report`) measures a policy's critic on an
env's problems with the metrics of :mod:`agentrl.critic_report`. Two ways to label sibling steps:

* **sampling** (default): per problem, from the start, the policy samples ``siblings`` next steps (one generator
  call with ``n`` samples, distinct steps kept: :func:`agentrl.policies.best_of_k.sample_candidates`); the critic
  values each one's afterstate through :class:`~agentrl.policies.scoring.CriticScorer` (the scorer best-of-K and
  beam search use); from each sibling's afterstate ``continuations`` episodes are played to the end with the
  policy (all of a depth's continuations batched into one policy call per step, each step valued by the critic
  too); a sibling's label is its continuations' success rate. The walk then follows the first-sampled sibling
  (a draw of the policy) to the next step, until the episode ends or ``depth`` steps.
* **trajectories** (``--trajectories FILE.jsonl``, no sampling): the episodes of one problem are grouped by shared
  step prefixes (:func:`agentrl.critic_report.prefix_siblings`); ``V`` after each step is read at the learner's
  afterstate positions (:func:`agentrl.critic_report.afterstate_values`).

Envs are copied with ``copy.deepcopy``; one that cannot be copied is rebuilt and replayed from its reset, so any
step-segmented env the rollout engine drives works.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentrl.build import build_env, build_generator, build_policy, build_scorer
from agentrl.config import option, require, to_dict
from agentrl.critic_report import ScoredEpisode, Sibling, SiblingSet, build_report, prefix_siblings
from agentrl.options import AgentOptions, EnvOptions
from agentrl.policies.action_space import with_admissible_list
from agentrl.trajectory import TrajectoryError, iter_episodes


@dataclass
class CriticReportConfig(EnvOptions, AgentOptions):
    """Options of `agentrl critic-report`: sibling-step AUC, pooled AUC and calibration of a critic."""

    split_role: ClassVar[str] = "eval"

    env: str = option("math", help="environment whose problems are probed (default: math)")
    out: str = option("", help="report JSON to write")
    plot: str | None = option(None, help="also write a PNG: reliability diagram + AUC by step")
    trajectories: str | None = option(None, help="label siblings from these trajectory JSONL files (comma-"
                                      "separated; episodes of a problem grouped by shared step prefixes) instead "
                                      "of sampling")
    tasks: int = option(20, help="sampling: the first N problems of the split (sorted ids)")
    siblings: int = option(4, help="sampling: next steps sampled at each prefix (distinct ones kept)")
    continuations: int = option(8, help="sampling: Monte-Carlo episodes played from each sibling's afterstate")
    depth: int | None = option(None, help="sampling: probe the first N steps of each problem (default: until the "
                               "walk's episode ends)")
    bins: int = option(10, help="calibration bins of V over [0, 1]")
    progress: bool = option(True, help="show progress while sampling")

    def __post_init__(self) -> None:
        require(bool(self.out) and self.out.endswith(".json"), f"give --out REPORT.json (got {self.out!r})")
        require(self.plot is None or self.plot.lower().endswith(".png"), f"--plot {self.plot}: give a .png file")
        for name in ("tasks", "siblings", "continuations", "bins"):
            require(getattr(self, name) >= 1, f"`{name}` must be >= 1, got {getattr(self, name)}")
        require(self.depth is None or self.depth >= 1, f"`depth` must be >= 1, got {self.depth}")
        self.temperature = 1.0 if self.temperature is None else self.temperature
        super().__post_init__()
        self.require_critic("critic-report")
        if self.trajectories is not None:
            for path in self.trajectories.split(","):
                require(Path(path).is_file(), f"--trajectories: no such file: {path}")
            return
        require(self.policy == "react", f"critic-report samples from the LLM: use --policy react (got {self.policy})")
        require(self.temperature > 0, "critic-report samples siblings and continuations: --temperature must be > 0")


@dataclass
class Branch:
    """An env at some state, the policy's chat to it, the steps taken and ``V`` after each of them."""

    env: Any
    context: Any
    actions: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    done: bool = False
    won: bool = False


class Prober:
    """Walks each problem's prefixes, sampling siblings and their continuations (module docstring).

    Args:
        policy: the sampling policy (``begin``/``act``/``observe``/``end``; siblings through
            :func:`~agentrl.policies.best_of_k.sample_candidates`).
        scorer: the critic as an action scorer (``score(contexts, candidates)``; ``release(key)`` if it caches).
        make_env: builds a fresh env (to replay an env that cannot be deep-copied).
        siblings: next steps sampled at each prefix (distinct ones kept).
        continuations: episodes played from each sibling's afterstate.
        max_steps: step cap of every episode.
        depth: probe the first ``depth`` steps (None: until the walk's episode ends).
        seed: env resets use ``seed + index`` (as the rollout engine does).
        env_kind: the policy's prompt kind (the env name).
        list_admissible: append the admissible commands to the observations, as the rollout engine does.
        tick: called with the number of continuation steps after each batched step (progress).
    """

    def __init__(self, policy: Any, scorer: Any, make_env: Callable[[], Any], *, siblings: int,
                 continuations: int, max_steps: int, depth: int | None = None, seed: int = 0,
                 env_kind: str = "math", list_admissible: bool = False,
                 tick: Callable[[int], None] | None = None):  # fmt: skip
        self.policy, self.scorer, self.make_env = policy, scorer, make_env
        self.siblings, self.continuations, self.max_steps, self.depth = siblings, continuations, max_steps, depth
        self.seed, self.env_kind, self.list_admissible = seed, env_kind, list_admissible
        self.tick = tick or (lambda n: None)
        self.reset_kwargs: dict[str, Any] = {}

    def probe(self, env: Any, index: int, task: str) -> tuple[list[SiblingSet], list[ScoredEpisode]]:
        """One problem: the sibling sets along its walk and every continuation as a scored episode."""
        self.reset_kwargs = {"seed": self.seed + index, "options": {"task_id": task}}
        observation, info = env.reset(**self.reset_kwargs)
        walk = Branch(env, self.policy.begin(0, self._shown(observation, info), info, self.env_kind))
        walk.context.memory["cache_key"] = f"{task}/walk"
        sets, episodes = [], []
        depth_cap = self.depth or self.max_steps
        while not walk.done and len(walk.actions) < depth_cap:
            depth = len(walk.actions) + 1
            children, groups = self._siblings(walk, f"{task}/d{depth}", call=depth - 1)
            self.finish([b for group in groups for b in group])
            sets.append(SiblingSet(task, depth, [
                Sibling(child.actions[-1], child.values[-1], sum(b.won for b in group), len(group))
                for child, group in zip(children, groups, strict=True)]))  # fmt: skip
            episodes += [ScoredEpisode(task, b.actions, b.values, b.won, {"branch_depth": depth})
                         for group in groups for b in group]  # fmt: skip
            for branch in [walk, *children[1:], *(b for group in groups for b in group)]:
                self._release(branch)
            walk = children[0]  # the first-sampled sibling: a draw of the policy
        self._release(walk)
        return sets, episodes

    def _siblings(self, walk: Branch, key: str, call: int) -> tuple[list[Branch], list[list[Branch]]]:
        """The distinct sampled next steps of ``walk`` (each taken in its own env copy) and, for each, the
        ``continuations`` copies of its afterstate that are then played to the end."""
        from agentrl.policies.best_of_k import sample_candidates  # torch: only when a report runs

        decisions = sample_candidates(self.policy, [walk.context], self.siblings, call=call)[0]
        values = self.scorer.score([walk.context], [decisions])[0]
        children = []
        for j, (decision, value) in enumerate(zip(decisions, values, strict=True)):
            child = self._copy(walk, f"{key}/s{j}")
            self._advance(child, decision, float(value))
            children.append(child)
        groups = [[self._copy(child, f"{key}/s{j}/c{m}") for m in range(self.continuations)]
                  for j, child in enumerate(children)]  # fmt: skip
        return children, groups

    def finish(self, branches: list[Branch]) -> None:
        """Plays every branch to its end: one batched policy call and one batched critic call per step."""
        active = [b for b in branches if not b.done]
        while active:
            contexts = [b.context for b in active]
            decisions = self.policy.act(contexts)
            values = self.scorer.score(contexts, [[d] for d in decisions])
            for branch, decision, value in zip(active, decisions, values, strict=True):
                self._advance(branch, decision, float(value[0]))
            self.tick(len(active))
            active = [b for b in active if not b.done]

    def _advance(self, branch: Branch, decision: Any, value: float) -> None:
        """Takes ``decision`` in the branch's env; the policy's chat records it and the env's answer."""
        observation, _reward, terminated, truncated, info = branch.env.step(decision.action)
        self.policy.observe(branch.context, decision, self._shown(observation, info), info)
        branch.actions.append(decision.action)
        branch.values.append(value)
        branch.won = bool(info.get("won", False))
        branch.done = bool(terminated or truncated) or len(branch.actions) >= self.max_steps

    def _copy(self, branch: Branch, cache_key: str) -> Branch:
        """An independent copy of ``branch`` (env, chat) under its own cache key."""
        try:
            env = copy.deepcopy(branch.env)
        except Exception:  # noqa: BLE001 - any copy failure means: rebuild and replay
            env = self.make_env()
            env.reset(**self.reset_kwargs)
            for action in branch.actions:
                env.step(action)
        context = copy.deepcopy(branch.context)
        context.memory["cache_key"] = cache_key
        return Branch(env, context, list(branch.actions), list(branch.values), branch.done, branch.won)

    def _release(self, branch: Branch) -> None:
        """The branch is done with: the generator and the critic drop its cached chat."""
        self.policy.end(branch.context)
        release = getattr(self.scorer, "release", None)
        if release is not None:
            release(branch.context.memory["cache_key"])

    def _shown(self, observation: str, info: dict[str, Any]) -> str:
        return with_admissible_list(observation, info) if self.list_admissible else observation


def sample_report(cfg: CriticReportConfig) -> tuple[list[SiblingSet], list[ScoredEpisode], list[Sibling]]:
    """Sampling mode over the first ``cfg.tasks`` problems: sibling sets, continuation episodes, and the siblings
    as the calibration's prefixes (each labelled by its own continuations)."""
    env = build_env(cfg)
    tasks = sorted(env.unwrapped.task_ids)[: cfg.tasks]
    generator = build_generator(cfg, seed=cfg.seed)
    policy = build_policy(cfg, generator)
    scorer = build_scorer(cfg, generator)
    sets: list[SiblingSet] = []
    episodes: list[ScoredEpisode] = []
    columns = (TextColumn("[bold]critic report"), BarColumn(), MofNCompleteColumn(), TextColumn("problems"),
               TextColumn("{task.fields[steps]} continuation steps"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, disable=not cfg.progress) as progress:
        bar = progress.add_task("probe", total=len(tasks), steps=0)
        steps = [0]

        def tick(n: int) -> None:
            steps[0] += n
            progress.update(bar, steps=steps[0])

        shown = bool(cfg.agent_format(generator).list_admissible)
        prober = Prober(policy, scorer, lambda: build_env(cfg), siblings=cfg.siblings,
                        continuations=cfg.continuations, max_steps=int(cfg.max_steps or 1), depth=cfg.depth,
                        seed=cfg.seed, env_kind=cfg.env, list_admissible=shown, tick=tick)  # fmt: skip
        for index, task in enumerate(tasks):
            found, played = prober.probe(env, index, task)
            sets += found
            episodes += played
            progress.advance(bar)
    env.close()
    return sets, episodes, [s for group in sets for s in group.siblings]


def file_report(cfg: CriticReportConfig) -> tuple[list[SiblingSet], list[ScoredEpisode], list[Sibling]]:
    """Trajectory mode: the episodes of ``cfg.trajectories`` (errored ones skipped), ``V`` after each step.

    Every file is read and tokenized before the critic is loaded, so a bad line fails fast.
    """
    from agentrl.critic_report import afterstate_values
    from agentrl.data import tokenize_episode
    from agentrl.models import load_tokenizer
    from agentrl.policies.scoring import CriticScorer

    read = [(f"{path}: episode {number} ({episode.episode_id})", episode)
            for path in str(cfg.trajectories).split(",")
            for number, episode in enumerate(iter_episodes(path), start=1) if not episode.error]  # fmt: skip
    if not read:
        raise TrajectoryError(f"--trajectories {cfg.trajectories}: no episodes without an error")
    tokenizer = load_tokenizer(cfg.model)
    items = []
    for where, episode in read:
        item = tokenize_episode(episode, tokenizer, where=where)
        if len(item.after_positions) != len(episode.steps):
            raise TrajectoryError(f"{where}: {len(episode.steps)} steps but {len(item.after_positions)} assistant "
                                  "turns in its chat")  # fmt: skip
        items.append(item)
    critic = CriticScorer.from_pretrained(str(cfg.critic), tokenizer, device=cfg.device, dtype=cfg.dtype).model
    episodes = [ScoredEpisode(episode.task_id, [s.action for s in episode.steps], values, bool(episode.success))
                for (_, episode), values in zip(read, afterstate_values(critic, items, device=cfg.device),
                                                strict=True)]  # fmt: skip
    sets, prefixes = prefix_siblings(episodes)
    return sets, episodes, prefixes


def critic_report(cfg: CriticReportConfig) -> dict[str, Any]:
    """Gathers the inputs (sampling, or ``cfg.trajectories``), writes the report JSON (and ``cfg.plot``)."""
    mode = "trajectories" if cfg.trajectories else "sampling"
    sets, episodes, prefixes = file_report(cfg) if cfg.trajectories else sample_report(cfg)
    report = build_report(sets, episodes, prefixes, cfg.bins, mode=mode, config=to_dict(cfg))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if cfg.plot:
        from agentrl.plots import plot_critic_report

        plot_critic_report(report, cfg.plot)
    return report
