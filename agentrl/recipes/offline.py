"""The offline-RL recipe, written once: data -> demonstrations -> base model -> SFT -> rounds -> summary.

Per seed (``OUT/seed<s>/``): a base model (``tiny``: built on the demonstrations' text), SFT on the
demonstrations, then ``rounds`` rounds of: sampled rollouts of the round's starting policy, every learner trained
from that policy on its ``train_on`` data, every evaluation of the round's policies. Round 1 starts from the SFT
policy, round r + 1 from round r's ``next_policy``. Shared by every seed (``OUT/``): generated tasks (``data/``) and
the expert demonstrations (with ``demonstrations.augment_copies``, also their object-renamed copies, which SFT trains
on: :mod:`agentrl.augment`). Each stage is resumable (:mod:`agentrl.recipes.stages`); the summary aggregates the
finished evaluations over seeds (:mod:`agentrl.recipes.summary`).

Layout::

    OUT/config.json  times.json  data/  demonstrations.jsonl  [demonstrations-aug<K>.jsonl]  summary.{json,md,png}
    OUT/seed<s>/times.json  base-model/  sft/  [round-<r>/]rollouts.jsonl  [round-<r>/]<learner>/
    OUT/seed<s>/results/<eval_on>/<method>.json (+ .jsonl episodes; ``<method> round <r>`` when rounds > 1)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrl.augment import AugmentConfig
from agentrl.config import ConfigError, from_dict, to_dict
from agentrl.evaluate import EvalConfig
from agentrl.learn_config import LearnConfig
from agentrl.options import EnvOptions, ModelOptions, PromptOptions, SamplingOptions, values
from agentrl.recipes.config import EvalSpec, RecipeConfig, expand, result_stem
from agentrl.recipes.stages import (
    Stages,
    console,
    finished,
    gen_tasks,
    make_tiny_model,
    run_augmentation,
    run_evaluation,
    run_learning,
    run_rollout,
)
from agentrl.recipes.summary import write_summary
from agentrl.rollout import RolloutConfig

ALFWORLD_EVAL_SPLITS = ("valid_seen", "valid_unseen")  # the task seed of split i is seed + 1 + i


def run_recipe(cfg: RecipeConfig) -> dict[str, Any]:
    """Runs (or continues) every stage of ``cfg`` and returns the summary (``{}`` with ``only``)."""
    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    stages = Stages(out, only=cfg.only)
    data = _prepare_data(cfg, stages)
    demos = _demonstrations(cfg, stages, data)
    sft_demos = _augmented(cfg, stages, demos)
    for seed in cfg.seeds:
        SeedRun(cfg, seed, data, demos, sft_demos).run()
    if cfg.only:
        console.print(f"ran the stages matching {cfg.only} in {time.perf_counter() - start:.0f} s; "
                      "rerun without --only for the summary")
        return {}
    summary = write_summary(cfg)
    console.print(f"{cfg.name} finished in {time.perf_counter() - start:.0f} s this run "
                  f"(all stages, over every run: {summary['stage_seconds_total']:.0f} s) -> {out / 'summary.md'}")
    return summary


def _prepare_data(cfg: RecipeConfig, stages: Stages) -> str | None:
    """The ALFWorld data root: generated under ``OUT/data`` when ``tasks`` is given, else ``cfg.data``."""
    if cfg.tasks is None:
        return cfg.data
    root = Path(cfg.out) / "data"
    tasks = cfg.tasks
    generate = {"room_size": tasks.room_size, "workers": tasks.workers, "task_types": tasks.task_types,
                "max_steps": tasks.max_steps}  # fmt: skip
    splits = [(str(cfg.split), tasks.train, cfg.seed)]
    splits += [(s, tasks.eval, cfg.seed + 1 + ALFWORLD_EVAL_SPLITS.index(s)) for s in cfg.eval_on
               if s in ALFWORLD_EVAL_SPLITS]
    for split, n, seed in splits:
        stages.run(f"generate {split} tasks", root / "json_2.1.1" / split, gen_tasks, root, split, n, seed,
                   **generate)
    return str(root)


def agent_options(cfg: RecipeConfig, data: str | None) -> dict[str, Any]:
    """The env, prompt, model and sampling options every rollout and evaluation of the recipe shares."""
    shared = values(cfg, EnvOptions, PromptOptions, ModelOptions, SamplingOptions)
    shared.update(data=data, progress=True)
    return shared


def _demonstrations(cfg: RecipeConfig, stages: Stages, data: str | None) -> Path | None:
    """Expert demonstrations on the train split, shared by every seed (``None`` without the section)."""
    if cfg.demonstrations is None:
        return None
    path = Path(cfg.out) / "demonstrations.jsonl"
    spec = cfg.demonstrations
    rcfg = RolloutConfig(**{**agent_options(cfg, data), "policy": "expert", "max_steps": spec.max_steps,
                            "episodes": spec.episodes, "out": str(path)})
    stages.run("expert demonstrations", finished(path), run_rollout, rcfg)
    return path


def _augmented(cfg: RecipeConfig, stages: Stages, demos: Path | None) -> Path | None:
    """The demonstrations plus ``augment_copies`` object-renamed copies of each (SFT's data), shared by every seed;
    ``None`` without copies."""
    spec = cfg.demonstrations
    if demos is None or spec is None or not spec.augment_copies:
        return None
    path = Path(cfg.out) / f"demonstrations-aug{spec.augment_copies}.jsonl"
    acfg = AugmentConfig(data=str(demos), out=str(path), copies=spec.augment_copies, seed=cfg.seed,
                         keep_original=True, receptacles=spec.augment_receptacles)
    stages.run("augment demonstrations", path, run_augmentation, acfg)
    return path


@dataclass
class SeedRun:
    """The stages of one training seed (see the module docstring)."""

    cfg: RecipeConfig
    seed: int
    data: str | None
    demos: Path | None
    sft_demos: Path | None = None  # what SFT trains on when it is not the demonstrations (renamed copies added)
    stages: Stages = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.cfg.out) / f"seed{self.seed}"
        self.stages = Stages(self.folder, only=self.cfg.only)

    def label(self, text: str, round_: int | None = None) -> str:
        """A stage's name: ``seed 0: [round 2: ]text`` (shell patterns of ``only`` match it)."""
        return f"seed {self.seed}: " + (f"round {round_}: " if round_ and self.cfg.rounds > 1 else "") + text

    def round_folder(self, round_: int) -> Path:
        return self.folder if self.cfg.rounds == 1 else self.folder / f"round-{round_}"

    def policy(self, name: str, round_: int) -> str:
        """The policy called ``name`` in round ``round_``: ``base``, ``sft`` or a learner's."""
        if name == "base":
            return self.base
        if name == "sft":
            return str(self.folder / "sft" / "policy")
        return str(self.round_folder(round_) / name / "policy")

    def run(self) -> None:
        self.base = self._base_model()
        start = self._sft()
        rollouts: list[str] = []
        self._evaluate_fixed()
        for round_ in range(1, self.cfg.rounds + 1):
            path = self._rollouts(round_, start)
            rollouts += [str(path)] if path else []
            for name in self.cfg.learners:
                self._learn(name, round_, start, rollouts)
            self._evaluate_round(round_)
            if self.cfg.next_policy:
                start = self.policy(self.cfg.next_policy, round_)

    def _base_model(self) -> str:
        if self.cfg.model != "tiny":
            return self.cfg.model
        folder = self.folder / "base-model"
        if self.demos is None:
            raise ConfigError("model: tiny builds its tokenizer on the demonstrations: give `demonstrations`")
        self.stages.run(self.label("tiny model"), folder / "config.json", make_tiny_model, self.demos, folder,
                        self.seed, **self.cfg.tiny_sizes())
        return str(folder)

    def _sft(self) -> str:
        if self.cfg.sft is None or self.demos is None:
            return self.base
        learned = self.folder / "sft"
        options = {**self.cfg.learn_options(self.cfg.sft, 1), "algo": "sft"}
        self._learn_stage(self.label("SFT"), learned, options, self.base, [str(self.sft_demos or self.demos)])
        return str(learned / "policy")

    def _rollouts(self, round_: int, start: str) -> Path | None:
        spec = self.cfg.rollouts
        if spec is None:
            return None
        path = self.round_folder(round_) / "rollouts.jsonl"
        label = self.label("rollouts", round_)
        if self.stages.passed_over(label):
            return path
        extra = {k: v.format(round=round_) if isinstance(v, str) else v for k, v in spec.options.items()}
        rcfg = from_dict(RolloutConfig, {**agent_options(self.cfg, self.data), "policy": spec.policy, "model": start,
                                         "samples_per_task": spec.samples_per_task, "episodes": spec.episodes,
                                         "seed": self.seed + round_ - 1, "out": str(path), **extra},
                         where=f"rollouts of round {round_}")  # from_dict: "{round}" -> 2 becomes an int
        self.stages.run(label, finished(path), run_rollout, rcfg)
        return path

    def _learn(self, name: str, round_: int, start: str, rollouts: list[str]) -> None:
        section = self.cfg.learners[name]
        data = [str(path) for path in section.get("extra_data", [])]
        for source in self.cfg.train_on(name):
            if source == "demonstrations" and self.demos is not None:
                data.append(str(self.demos))
            elif source == "rollouts" and rollouts:
                data.append(rollouts[-1])
            elif source == "all_rollouts":
                data += rollouts
        options = self.cfg.learn_options(section, round_)
        if section.get("carry_critic") and round_ > 1:
            options["critic_init"] = str(self.round_folder(round_ - 1) / name / "critic")
        self._learn_stage(self.label(name, round_), self.round_folder(round_) / name, options, start, data)

    def _learn_stage(self, label: str, learned: Path, options: dict[str, Any], model: str, data: list[str]) -> None:
        if self.stages.passed_over(label):
            return
        lcfg = from_dict(LearnConfig, {"seed": self.seed, **options, "data": data, "model": model,
                                       "out": str(learned)}, where=label)
        self.stages.run(label, finished(learned), run_learning, lcfg)

    def _evaluate_fixed(self) -> None:
        """Evaluations of policies that do not change over rounds (``base``, ``sft``)."""
        for method, spec in self.cfg.evaluations.items():
            if spec.policy in ("base", "sft"):
                self._evaluate(method, spec, 1, fixed=True)

    def _evaluate_round(self, round_: int) -> None:
        for method, spec in self.cfg.evaluations.items():
            if spec.policy not in ("base", "sft"):
                self._evaluate(method, spec, round_, fixed=False)

    def _evaluate(self, method: str, spec: EvalSpec, round_: int, fixed: bool) -> None:
        for name, extra in expand(method, spec):
            if not fixed and self.cfg.rounds > 1:
                name = f"{name} round {round_}"
            for target in self.cfg.eval_on:
                path = self.folder / "results" / target / f"{result_stem(name)}.json"
                label = self.label(f"evaluate {name} on {target}")
                if self.stages.passed_over(label):
                    continue
                ecfg = self._eval_config(spec, round_, target, name, path, extra)
                self.stages.run(label, path, run_evaluation, ecfg)

    def _eval_config(self, spec: EvalSpec, round_: int, target: str, name: str, path: Path,
                     extra: dict[str, Any]) -> EvalConfig:
        options = agent_options(self.cfg, self.data)
        options.update(split=None, temperature=spec.temperature, seed=self.seed, episodes=self.cfg.eval_episodes,
                       policy="react", model=self.policy(spec.policy, round_), method=name, out=str(path),
                       trajectories=str(path.with_suffix(".jsonl")))
        if self.cfg.env == "math":
            options["dataset"] = target  # evaluated on the dataset's evaluation split
        else:
            options["split"] = target
        if spec.critic is not None:
            options["critic"] = str(self.round_folder(round_) / spec.critic / "critic")
        if spec.num_envs is not None or "beam" in extra:
            options["num_envs"] = spec.num_envs or 1  # beams: one task at a time unless asked (no gain on CPU)
        options["beam_prior"] = spec.beam_prior  # EvalSpec allows it only beside `beam`
        options["beam_prior_by"] = spec.beam_prior_by
        last = (spec is list(self.cfg.evaluations.values())[-1]) and target == self.cfg.eval_on[-1]
        options["live"] = self.cfg.live and last
        return EvalConfig(**options, **extra)
