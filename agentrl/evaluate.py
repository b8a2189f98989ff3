"""Evaluation runs: every task of a split once, through the rollout engine or step-level beam search.

:func:`evaluate` plays the episodes of an :class:`EvalConfig` (greedy, best-of-K with a critic, or for math
beam search), summarises them (:func:`agentrl.evaluation.summarize`) and writes ``results.json``. ``agentrl eval``
parses its flags into an :class:`EvalConfig` and calls it; recipes call it directly.
"""

from __future__ import annotations

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
from agentrl.types import Episode, episode_id


@dataclass
class EvalConfig(RunOptions):
    """Options of an evaluation (`agentrl eval`, or `agentrl eval --compare a.json b.json ...`)."""

    split_role: ClassVar[str] = "eval"

    out: str = option("", help="results.json to write")
    episodes: int | None = option(None, help="number of episodes (default: every task of the split once)")
    beam: int | None = option(None, help="math: step-level beam search with B beams x B samples per step")
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
        require(bool(self.out), "give --out results.json (or --compare a.json b.json ...)")
        super().__post_init__()
        if self.beam is not None:
            require(self.env == "math", f"--beam is step-level search for math; use --best-of for {self.env}")
            self.require_critic(f"--beam {self.beam}")
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
            name += f"+beam-{self.beam}"
        return name


def rollout_config(cfg: EvalConfig, out: str) -> RolloutConfig:
    """The rollout engine's config for an evaluation run: one episode per task, the eval's options."""
    shared = values(cfg, RunOptions)
    return RolloutConfig(**{**shared, "out": out}, episodes=cfg.episodes, samples_per_task=1)


def evaluate(cfg: EvalConfig, pool: Any = None, policy: Any = None) -> dict[str, Any]:
    """Runs the episodes of ``cfg`` and returns the ``results.json`` mapping (also written to ``cfg.out``).

    ``pool``/``policy`` override what would be built from ``cfg`` (tests pass fakes).
    """
    with tempfile.TemporaryDirectory(prefix="agentrl-eval-") as tmp:
        path = cfg.trajectories or str(Path(tmp) / "episodes.jsonl")
        if cfg.beam is not None:
            beam_evaluate(cfg, path)
        else:
            rollout(rollout_config(cfg, path), pool=pool, policy=policy, summary_table=False)
        episodes = read_episodes(path)
    results = summarize(episodes, config=to_dict(cfg), method=cfg.method_name)
    write_results(cfg.out, results)
    return results


def beam_evaluate(cfg: EvalConfig, path: str) -> None:
    """Beam search (width ``cfg.beam``) on every task of a math split; episodes appended to ``path``.

    Args:
        cfg: the evaluation's options (env, dataset, split, model, critic, beam, episodes, max_steps, ...).
        path: trajectory JSONL to write (existing episodes are kept and skipped with ``cfg.resume``).
    """
    out = Path(path)
    if out.exists() and out.stat().st_size > 0 and not cfg.resume:
        raise ConfigError(f"{path} exists and is not empty; pass --resume to continue it or choose another file")
    done_ids = finished_ids(path) if cfg.resume else set()
    env = build_env(cfg)
    tasks = plan_episodes(sorted(env.unwrapped.task_ids), 1, cfg.episodes)
    generator = build_generator(cfg, seed=cfg.seed)
    fmt, warnings = agent_format.of_run(cfg, generator)
    agent_format.report(warnings)
    policy = ReActPolicy(generator, cfg.sampling(), history=fmt.history, example=fmt.example, thoughts=fmt.thoughts)
    scorer = build_scorer(cfg, generator)
    with TrajectoryWriter(path) as writer, Progress(disable=not cfg.progress) as progress:
        bar = progress.add_task(f"beam-{cfg.beam} search", total=len(tasks))
        for index, (task, sample) in enumerate(tasks):
            eid = episode_id(cfg.env, cfg.split, task, sample)
            if eid not in done_ids:
                episode = _beam_episode(cfg, env, policy, scorer, generator, index, task, eid)
                writer.write(episode)
                if cfg.live:  # a search has no single env to follow: show each task's chosen beam when it is done
                    play(episode, progress.console)
            progress.advance(bar)
    env.close()


def _beam_episode(cfg: EvalConfig, env: Any, policy: Any, scorer: Any, generator: Any, index: int, task: str,
                  eid: str) -> Episode:
    """One task's beam search, recorded as the episode of its chosen beam."""
    from agentrl.search import beam_search  # torch (the critic's scorer): only when a search runs

    width = int(cfg.beam or 1)
    result = beam_search(env, policy, scorer, width=width, max_steps=int(cfg.max_steps or 1),
                         reset_kwargs={"seed": cfg.seed + index, "options": {"task_id": task}},
                         make_env=lambda: build_env(cfg), cache_prefix=f"{task}/beam")
    for rank in range(width):  # the task is done: free its beams' KV caches
        generator.release(f"{task}/beam/{rank}")
    best = result.best
    return Episode(
        episode_id=eid, task_id=task, env_id=cfg.env_id, split=str(cfg.split),
        task_type=str(best.info.get("task_type") or "math"), policy=f"beam-{width}",
        success=bool(best.info.get("won", False)), reward=best.reward, steps=best.steps,
        messages=list(best.context.messages),
        meta={"model": cfg.model, "critic": cfg.critic, "beam": width, "finished_beams": result.finished,
              "expansions": result.expansions, "samples": result.samples, "search_steps": result.search_steps, "seed": cfg.seed,
              "temperature": cfg.temperature, "value": best.value, "agent": cfg.agent_format(generator).to_dict()},
    )
