"""Evaluation runs: every task of a split once, through the rollout engine, best-of-N or step-level beam search.

:func:`evaluate` plays the episodes of an :class:`EvalConfig` (greedy, best-of-K with a critic, best-of-N over
whole solutions with a critic, or for math beam search), summarises them (:func:`agentrl.evaluation.summarize`) and writes ``results.json``. ``agentrl eval``
parses its flags into an :class:`EvalConfig` and calls it; recipes call it directly.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.progress import Progress

from agentrl import agent_format
from agentrl.build import build_env, build_generator, build_scorer
from agentrl.config import ConfigError, option, require, to_dict
from agentrl.evaluation import summarize, write_results
from agentrl.options import RunOptions, values
from agentrl.policies.react import ReActPolicy
from agentrl.replay import play
from agentrl.rollout import RolloutConfig, plan_episodes, rollout
from agentrl.trajectory import TrajectoryWriter, finished_ids, read_episodes
from agentrl.types import BEAM_PRIORS, Episode, episode_id


@dataclass
class EvalConfig(RunOptions):
    """Options of an evaluation (`agentrl eval`, or `agentrl eval --compare a.json b.json ...`)."""

    split_role: ClassVar[str] = "eval"

    out: str = option("", help="results.json to write")
    episodes: int | None = option(None, help="number of episodes (default: every task of the split once)")
    beam: int | None = option(None, help="math: step-level beam search with B beams x B samples per step")
    beam_prior: float = option(
        0.0,
        help="math beams: rank by V + W * sum over the path of log(samples/B), the sampling policy's own vote "
        "(agentrl.search); 0 ranks by V alone, as the paper",
    )
    beam_prior_by: str = option(
        "samples",
        help="what --beam-prior counts: samples (log(n/B), the policy's vote) | logprob (the policy's exact "
        "log pi of each step, which the transformers, vLLM and OpenAI-compatible backends report)",
    )
    best_of_n: int | None = option(
        None,
        help="best-of-N over whole solutions: N sampled episodes per task (kept in TRAJECTORIES's .solutions.jsonl), "
        "the one the critic values most at its final afterstate is the task's episode",
    )
    trajectories: str | None = option(None, help="also keep every episode in this JSONL (for replay / plot)")
    method: str | None = option(None, help="name of this run in tables and --compare (default: from the options)")
    compare: list[str] = option([], help="print these results.json files side by side and exit", nargs="+")

    def __post_init__(self) -> None:
        if self.compare:
            return
        if self.beam is not None:
            require(self.beam >= 1, f"--beam must be >= 1, got {self.beam}")
            require(self.best_of is None and self.policy != "best_of_k", "give --best-of K or --beam B, not both")
            require(self.policy == "react", f"--beam samples from the LLM: use --policy react (got {self.policy})")
            self.temperature = 1.0 if self.temperature is None else self.temperature
        require(self.beam_prior >= 0, f"--beam-prior must be >= 0, got {self.beam_prior}")
        require(not self.beam_prior or self.beam is not None, "--beam-prior weighs beam candidates: give --beam B")
        require(self.beam_prior_by in BEAM_PRIORS,
                f"--beam-prior-by must be one of {', '.join(BEAM_PRIORS)}, got {self.beam_prior_by!r}")
        if self.best_of_n is not None:
            require(self.best_of_n >= 1, f"--best-of-n must be >= 1, got {self.best_of_n}")
            require(self.beam is None, "give --beam B or --best-of-n N, not both")
            require(self.best_of is None and self.policy != "best_of_k", "give --best-of K or --best-of-n N, not both")
            require(self.policy == "react", f"--best-of-n samples from the LLM: use --policy react (got {self.policy})")
            self.temperature = 1.0 if self.temperature is None else self.temperature
        require(bool(self.out), "give --out results.json (or --compare a.json b.json ...)")
        super().__post_init__()
        if self.beam is not None:
            require(self.env == "math", f"--beam is step-level search for math; use --best-of for {self.env}")
            self.require_critic(f"--beam {self.beam}")
        if self.best_of_n is not None:
            self.require_critic(f"--best-of-n {self.best_of_n}")
        require(self.episodes is None or self.episodes >= 1, f"`episodes` must be >= 1, got {self.episodes}")
        require(not self.resume or self.trajectories is not None, "--resume needs --trajectories FILE.jsonl")

    @property
    def method_name(self) -> str:
        """The run's name in tables: ``--method``, else policy(model)[+best-of-K][+beam-B]."""
        if self.method:
            return self.method
        if not self.uses_model:
            return self.policy
        model = Path(self.model)
        name = f"react({model.parent.name if model.name == 'policy' and model.parent.name else model.name})"
        if self.policy == "best_of_k":
            name += f"+best-of-{self.best_of}"
        if self.beam is not None:
            by = "" if self.beam_prior_by == "samples" else f"-{self.beam_prior_by}"
            name += f"+beam-{self.beam}" + (f"-prior{by}-{self.beam_prior:g}" if self.beam_prior else "")
        if self.best_of_n is not None:
            name += f"+best-of-n-{self.best_of_n}"
        return name


def rollout_config(cfg: EvalConfig, out: str) -> RolloutConfig:
    """The rollout engine's config for an evaluation run: one episode per task, the eval's options."""
    shared = values(cfg, RunOptions)
    return RolloutConfig(**{**shared, "out": out}, episodes=cfg.episodes, samples_per_task=1)


def evaluate(cfg: EvalConfig, pool: Any = None, policy: Any = None, scorer: Any = None) -> dict[str, Any]:
    """Runs the episodes of ``cfg`` and returns the ``results.json`` mapping (also written to ``cfg.out``).

    ``pool``/``policy`` (and for best-of-N ``scorer``) override what would be built from ``cfg`` (tests pass fakes).
    """
    with tempfile.TemporaryDirectory(prefix="agentrl-eval-") as tmp:
        path = cfg.trajectories or str(Path(tmp) / "episodes.jsonl")
        if cfg.beam is not None:
            beam_evaluate(cfg, path)
        elif cfg.best_of_n is not None:
            best_of_n_evaluate(cfg, path, pool=pool, policy=policy, scorer=scorer)
        else:
            rollout(rollout_config(cfg, path), pool=pool, policy=policy, summary_table=False)
        episodes = read_episodes(path)
    results = summarize(episodes, config=to_dict(cfg), method=cfg.method_name)
    write_results(cfg.out, results)
    return results


def solutions_path(path: str | Path) -> Path:
    """Where best-of-N keeps every sampled solution of a run whose chosen episodes go to ``path``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".jsonl") + ".solutions.jsonl")


def best_of_n_evaluate(cfg: EvalConfig, path: str, pool: Any = None, policy: Any = None, scorer: Any = None) -> None:
    """Best-of-N over whole solutions on every task; the chosen episodes are appended to ``path``.

    The rollout engine samples ``cfg.best_of_n`` episodes per task (at ``cfg.temperature``, 1.0 by default) into
    :func:`solutions_path` (it resumes with ``cfg.resume``); the critic scores each one's final afterstate
    (:func:`agentrl.search.score_solutions`) and the highest-valued one is the task's episode, with every
    solution's value in its ``meta["solutions"]`` (:func:`agentrl.search.best_of_n`).

    Args:
        cfg: the evaluation's options (``best_of_n``, ``critic``, the model and sampling options, ...).
        path: trajectory JSONL of the chosen episodes (existing ones are kept and skipped with ``cfg.resume``).
        pool, policy, scorer: override what would be built from ``cfg`` (tests pass fakes).
    """
    from agentrl.search import best_of_n, score_solutions  # torch (the critic): only when a search runs

    out, n = Path(path), int(cfg.best_of_n or 1)
    if out.exists() and out.stat().st_size > 0 and not cfg.resume:
        raise ConfigError(f"{path} exists and is not empty; pass --resume to continue it or choose another file")
    generator = build_generator(cfg, seed=cfg.seed) if policy is None or scorer is None else None
    samples = RolloutConfig(**{**values(cfg, RunOptions), "out": str(solutions_path(path))},
                            episodes=None if cfg.episodes is None else cfg.episodes * n, samples_per_task=n)
    rollout(samples, pool=pool, policy=policy, generator=generator, summary_table=False)
    scorer = scorer if scorer is not None else build_scorer(cfg, generator)
    by_task: dict[str, list[Episode]] = {}
    for episode in read_episodes(samples.out):
        by_task.setdefault(episode.task_id, []).append(episode)
    done_ids = finished_ids(path) if cfg.resume else set()
    with TrajectoryWriter(path) as writer:
        for task, episodes in by_task.items():
            eid = episode_id(cfg.env, cfg.split, task, 0)
            if eid in done_ids:
                continue
            episodes.sort(key=lambda e: int(e.meta.get("sample", 0)))
            chosen = best_of_n(episodes, score_solutions(episodes, scorer, env_kind=cfg.env),
                               critic=cfg.critic, temperature=cfg.temperature)
            chosen.episode_id, chosen.policy = eid, f"best-of-n-{n}"
            writer.write(chosen)


def beam_evaluate(cfg: EvalConfig, path: str) -> None:
    """Beam search (width ``cfg.beam``) on every task of a math split; episodes appended to ``path``.

    ``cfg.num_envs`` tasks are searched together (:func:`agentrl.search.beam_search_many`: their beams share
    each generator and critic call), in one process.

    Args:
        cfg: the evaluation's options (env, dataset, split, model, critic, beam, episodes, max_steps, ...).
        path: trajectory JSONL to write (existing episodes are kept and skipped with ``cfg.resume``).
    """
    from agentrl.search import SearchTask, beam_search_many  # torch (the critic): only when a search runs

    out = Path(path)
    if out.exists() and out.stat().st_size > 0 and not cfg.resume:
        raise ConfigError(f"{path} exists and is not empty; pass --resume to continue it or choose another file")
    done_ids = finished_ids(path) if cfg.resume else set()
    first = build_env(cfg)  # the others are copies: an env copy shares the loaded problem set
    envs = [first] + [copy.deepcopy(first) for _ in range(cfg.num_envs - 1)]
    planned = plan_episodes(sorted(first.unwrapped.task_ids), 1, cfg.episodes)
    todo = [(index, task, episode_id(cfg.env, cfg.split, task, sample))
            for index, (task, sample) in enumerate(planned)]  # fmt: skip
    todo = [t for t in todo if t[2] not in done_ids]
    generator = build_generator(cfg, seed=cfg.seed)
    fmt, warnings = agent_format.of_run(cfg, generator)
    agent_format.report(warnings)
    policy = ReActPolicy(generator, cfg.sampling(), history=fmt.history, example=fmt.example, thoughts=fmt.thoughts)
    scorer = build_scorer(cfg, generator)
    width = int(cfg.beam or 1)
    tasks = [SearchTask({"seed": cfg.seed + index, "options": {"task_id": task}}, f"{task}/beam")
             for index, task, _ in todo]  # fmt: skip
    searches = beam_search_many(envs, tasks, policy, scorer, width=width, max_steps=int(cfg.max_steps or 1),
                                make_env=lambda: build_env(cfg), prior_weight=cfg.beam_prior,
                                prior_by=cfg.beam_prior_by)  # fmt: skip
    with TrajectoryWriter(path) as writer, Progress(disable=not cfg.progress) as progress:
        bar = progress.add_task(f"beam-{width} search", total=len(planned), completed=len(planned) - len(todo))
        for i, result in searches:
            _, task, eid = todo[i]
            for rank in range(width):  # the task is done: free its beams' KV caches
                generator.release(f"{task}/beam/{rank}")
            episode = _beam_episode(cfg, result, generator, task, eid)
            writer.write(episode)
            if cfg.live:  # a search has no single env to follow: show each task's chosen beam when it is done
                play(episode, progress.console)
            progress.advance(bar)
    for env in envs:
        env.close()


def _beam_episode(cfg: EvalConfig, result: Any, generator: Any, task: str, eid: str) -> Episode:
    """One task's beam search (a :class:`agentrl.search.SearchResult`), recorded as the episode of its chosen
    beam."""
    width = int(cfg.beam or 1)
    best = result.best
    return Episode(
        episode_id=eid, task_id=task, env_id=cfg.env_id, split=str(cfg.split),
        task_type=str(best.info.get("task_type") or "math"), policy=f"beam-{width}",
        success=bool(best.info.get("won", False)), reward=best.reward, steps=best.steps,
        messages=list(best.context.messages),
        meta={"model": cfg.model, "critic": cfg.critic, "beam": width, "beam_prior": cfg.beam_prior, "beam_prior_by": cfg.beam_prior_by,
              "prior": best.prior, "finished_beams": result.finished,
              "expansions": result.expansions, "samples": result.samples, "search_steps": result.search_steps, "seed": cfg.seed,
              "temperature": cfg.temperature, "value": best.value, "agent": cfg.agent_format(generator).to_dict()},
    )
