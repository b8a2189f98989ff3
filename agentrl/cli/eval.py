"""Evaluate a policy (optionally critic-guided: best-of-K, step beam) and write success tables: `agentrl eval`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrl.config import ConfigError, on_off, option, require
from agentrl.rollout import check_action_options

ENVS = ("alfworld", "textworld", "math")
DEFAULT_MAX_STEPS = {"alfworld": 40, "textworld": 40, "math": 20}


@dataclass
class Config:
    """Options of `agentrl eval` (or `agentrl eval --compare a.json b.json ...`)."""

    env: str = option("alfworld", help="environment: alfworld, textworld or math")
    data: str | None = option(None, help="alfworld: data root holding json_2.1.1/<split>/... (agentrl gen alfworld)")
    split: str = option("valid_unseen", help="split to evaluate on (alfworld: valid_seen / valid_unseen; math: test)")
    dataset: str | None = option(None, help="math: dataset name (gsm8k-test-100, gsm-symbolic, chain-sum, jsonl:PATH)")
    problems: int = option(1000, help="math: problems a generator dataset (gsm-symbolic, chain-sum) makes per split")
    games: str | None = option(None, help="textworld: game file or folder")
    policy: str = option("react", help="policy: react (LLM), expert, random")
    model: str = option("default", help="policy model: folder, hub name, LoRA adapter folder or `default`")
    critic: str | None = option(None, help="critic folder (e.g. OUT/critic of `agentrl learn`) for --best-of / --beam")
    best_of: int | None = option(None, help="best-of-K: sample K actions per step, act on the critic's best")
    beam: int | None = option(None, help="math: step-level beam search with B beams x B samples per step")
    episodes: int | None = option(None, help="number of episodes (default: every task of the split once)")
    max_steps: int | None = option(None, help="step cap per episode (default: 40 for alfworld/textworld, 20 for math)")
    num_envs: int = option(1, help="parallel environments")
    seed: int = option(0, help="seed for env resets and sampling")
    temperature: float | None = option(None, help="sampling temperature (default: 1.0 with --best-of/--beam, else 0)")
    top_p: float = option(1.0, help="nucleus sampling mass")
    max_new_tokens: int = option(128, help="token cap per assistant turn")
    history: int | None = option(None, help="prompt keeps only the last N turns (default: full history)")
    example: bool = option(True, help="put the in-context example in the system prompt")
    thoughts: str = option("on", help="on: turns are `Think: ...` + `Action: ...`; off: thought-free `Action: ...` turns")
    action_space: str | None = option(None, help="free: the model writes its command; admissible: the command is chosen among the env's admissible ones (best-of-K: the top-K distinct ones; default: free)")
    choice_score: str = option("mean", help="admissible: rank commands by mean (length-normalised) or sum log-prob")
    backend: str = option("transformers", help="generation backend: transformers, openai, vllm")
    base_url: str | None = option(None, help="openai backend: endpoint")
    device: str = option("cpu", help="torch device for the policy and the critic")
    dtype: str = option("float32", help="float32, bfloat16 or float16")
    out: str = option("", help="results.json to write")
    trajectories: str | None = option(None, help="also keep every episode in this JSONL (for replay / plot)")
    resume: bool = option(False, help="with --trajectories: keep its finished episodes and run only the rest")
    method: str | None = option(None, help="name of this run in tables and --compare (default: from the options)")
    live: bool = option(False, help="watch one env's episodes live (plain lines when stdout is not a terminal; --beam: each task's chosen beam when done)")
    live_slot: int = option(0, help="with --live: which env to watch")
    progress: bool = option(True, help="show progress bars")
    compare: list[str] = option([], help="print these results.json files side by side and exit", nargs="+")

    def __post_init__(self) -> None:
        if self.compare:
            return
        require(self.env in ENVS, f"`env` must be one of {', '.join(ENVS)}, got {self.env!r}")
        require(self.policy in ("react", "expert", "random"), f"`policy` must be react, expert or random, got {self.policy!r}")
        self.thoughts = on_off(self.thoughts, "thoughts")
        check_action_options(self.action_space, self.choice_score, self.env)
        require(bool(self.out), "give --out results.json (or --compare a.json b.json ...)")
        require(self.best_of is None or self.beam is None, "give --best-of K or --beam B, not both")
        for name in ("best_of", "beam"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.best_of is not None or self.beam is not None:
            flag = "--best-of" if self.best_of is not None else "--beam"
            require(self.critic is not None, f"{flag} needs --critic DIR (a critic written by `agentrl learn`)")
            require(self.policy == "react", f"{flag} samples from the LLM: use --policy react (got {self.policy})")
            require(Path(str(self.critic)).is_dir(), f"--critic: no such folder: {self.critic}")
        if self.beam is not None:
            require(self.env == "math", f"--beam is step-level search for math; use --best-of for {self.env}")
        if self.max_steps is None:
            self.max_steps = DEFAULT_MAX_STEPS[self.env]
        require(self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}")
        if self.temperature is None:
            sampled = ((self.best_of or 1) > 1 and self.action_space != "admissible") or self.beam
            self.temperature = 1.0 if sampled else 0.0
        require(self.temperature >= 0, f"--temperature must be >= 0, got {self.temperature}")
        require(self.live_slot >= 0, f"--live-slot must be >= 0, got {self.live_slot}")
        require(self.live_slot < self.num_envs, f"--live-slot {self.live_slot} but only {self.num_envs} env(s)")
        require(not self.resume or self.trajectories is not None, "--resume needs --trajectories FILE.jsonl")

    @property
    def method_name(self) -> str:
        if self.method:
            return self.method
        name = self.policy
        if self.policy == "react":
            model = Path(self.model)
            name += f"({model.parent.name if model.name == 'policy' and model.parent.name else model.name})"
        if self.best_of is not None:
            name += f"+best-of-{self.best_of}"
        if self.beam is not None:
            name += f"+beam-{self.beam}"
        return name


def rollout_config(cfg: Config, out: str) -> Any:
    """The rollout engine's config for an evaluation run (one episode per task, the eval's step cap)."""
    from agentrl.rollout import RolloutConfig

    return RolloutConfig(
        env=cfg.env, out=out, policy="best_of_k" if cfg.best_of is not None else cfg.policy, data=cfg.data,
        split=cfg.split, dataset=cfg.dataset, problems=cfg.problems, games=cfg.games, model=cfg.model,
        backend=cfg.backend, base_url=cfg.base_url, episodes=cfg.episodes, samples_per_task=1, num_envs=cfg.num_envs,
        max_steps=int(cfg.max_steps or 40), temperature=float(cfg.temperature or 0.0), top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens, history=cfg.history, example=cfg.example, thoughts=cfg.thoughts,
        action_space=cfg.action_space, choice_score=cfg.choice_score, seed=cfg.seed,
        resume=cfg.resume, device=cfg.device, dtype=cfg.dtype, progress=cfg.progress,
    )


def evaluate(cfg: Config, pool: Any = None, policy: Any = None, generator: Any = None) -> dict[str, Any]:
    """Runs the episodes of ``cfg`` and returns the ``results.json`` mapping (also written to ``cfg.out``).

    ``pool``/``policy``/``generator`` override what would be built from ``cfg`` (tests pass fakes).
    """
    import tempfile

    from agentrl.config import to_dict
    from agentrl.evaluation import summarize, write_results
    from agentrl.trajectory import read_episodes

    with tempfile.TemporaryDirectory(prefix="agentrl-eval-") as tmp:
        path = cfg.trajectories or str(Path(tmp) / "episodes.jsonl")
        if cfg.beam is not None:
            from agentrl.search import beam_evaluate

            beam_evaluate(cfg, path)
        else:
            from agentrl.rollout import make_generator, rollout

            rcfg = rollout_config(cfg, path)
            if policy is None and cfg.best_of is not None:
                from agentrl.backends.base import Sampling
                from agentrl.policies.best_of_k import make

                generator = generator or make_generator(rcfg)
                sampling = Sampling(temperature=float(cfg.temperature or 0.0), top_p=cfg.top_p,
                                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, choice_score=cfg.choice_score)
                policy = make(generator=generator, sampling=sampling, history=rcfg.history, example=rcfg.example,
                              thoughts=rcfg.with_thoughts, action_space=rcfg.actions, critic=str(cfg.critic), k=cfg.best_of,
                              device=cfg.device, dtype=cfg.dtype)
            on_step = None
            if cfg.live:
                from agentrl.replay import LiveView

                on_step = LiveView(slot=cfg.live_slot, max_steps=cfg.max_steps)
            rollout(rcfg, on_step, pool=pool, policy=policy, generator=generator, summary_table=False)
        episodes = read_episodes(path)
    results = summarize(episodes, config=to_dict(cfg), method=cfg.method_name)
    write_results(cfg.out, results)
    return results


def run(cfg: Config) -> int:
    from rich.console import Console

    from agentrl.evaluation import ResultsError, compare_table, load_results, method_names, results_table

    console = Console()
    if cfg.compare:
        try:
            results = [load_results(p) for p in cfg.compare]
        except ResultsError as err:
            raise ConfigError(str(err)) from None
        console.print(compare_table(results, method_names(results, cfg.compare)))
        return 0
    from agentrl.models import ModelError

    try:
        results = evaluate(cfg)
    except (ModelError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None
    console.print(results_table(results))
    lo, hi = results["ci95"]
    console.print(
        f"success {results['successes']}/{results['episodes']} = {100 * results['success_rate']:.1f}% "
        f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}), mean steps {results['mean_steps']:.1f} -> {cfg.out}"
    )
    return 0
