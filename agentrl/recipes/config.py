"""The offline-RL recipe's config: data -> demonstrations -> SFT -> rounds of (rollouts -> learners) -> evaluations.

One YAML file describes a whole experiment; ``agentrl demo``, ``agentrl iterate`` and the mini-benchmarks are such
files (``configs/demo.yaml``, ``bench/*/config.yaml``). Top-level keys are the shared option groups (env, prompt,
model, sampling, tiny model: the same names as on ``agentrl rollout``) plus the sections below; a nested key is
overridden on the command line with a dotted flag (``--sft.epochs 3``, ``--learners.OREO.lr 1e-4``).

Learner and SFT sections hold ``agentrl learn`` options (checked against its config when the recipe loads) and
these recipe keys: ``train_on`` (``demonstrations``, ``rollouts`` = this round's, ``all_rollouts`` = rounds 1..r),
``extra_data`` (trajectory files added to its data every round), ``carry_critic`` (round r > 1 starts its critic
from round r - 1's) and ``first_round`` (options for round 1 only, e.g. OREAL's reward-model warm-up).
"""

from __future__ import annotations

import dataclasses
import difflib
import string
from dataclasses import dataclass
from typing import Any

from agentrl.config import ConfigError, from_dict, option, require
from agentrl.learn_config import LearnConfig
from agentrl.options import EnvOptions, ModelOptions, PromptOptions, SamplingOptions, TinyModelOptions
from agentrl.types import BEAM_PRIORS

TRAIN_SOURCES = ("demonstrations", "rollouts", "all_rollouts")
RECIPE_LEARN_KEYS = ("train_on", "extra_data", "carry_critic", "first_round")


@dataclass
class TasksSpec:
    """Generated ALFWorld tasks (env alfworld, no ``data`` given): every one verified by the hand-coded expert."""

    train: int = option(24, help="train tasks")
    eval: int = option(12, help="tasks of each evaluation split")
    room_size: str = option("any", help="any, small, medium or large")
    task_types: list[str] = option([], help="task types to cycle through (empty: all six)")
    workers: int = option(2, help="processes generating tasks")
    max_steps: int = option(50, help="the expert must solve each task within this many steps")

    def __post_init__(self) -> None:
        require(self.train >= 1 and self.eval >= 1, f"tasks: need train >= 1 and eval >= 1, got {self.train}, {self.eval}")
        require(self.workers >= 1, f"tasks.workers must be >= 1, got {self.workers}")


@dataclass
class DemonstrationsSpec:
    """Expert demonstrations on the train split (shared by every seed)."""

    episodes: int | None = option(None, help="episodes (default: every train task once)")
    max_steps: int = option(50, help="the expert's step cap (its longest solutions must fit)")
    augment_copies: int = option(0, help="alfworld: SFT also trains on this many object-renamed copies of each "
                                 "demonstration (`agentrl augment`; other learners keep the originals)")
    augment_receptacles: bool = option(False, help="the copies rename receptacle types too")

    def __post_init__(self) -> None:
        require(self.episodes is None or self.episodes >= 1, f"demonstrations.episodes must be >= 1, got {self.episodes}")
        require(self.augment_copies >= 0, f"demonstrations.augment_copies must be >= 0, got {self.augment_copies}")


@dataclass
class RolloutsSpec:
    """Sampled rollouts of each round's starting policy on the train split (the learners' own-policy data)."""

    samples_per_task: int = option(2, help="rollouts per train task (the paper: 5)")
    episodes: int | None = option(None, help="cap on rollout episodes (default: every task x samples_per_task)")
    policy: str = option("react", help="the rollout policy (react; a policy that labels its states, e.g. DAgger's)")
    options: dict[str, Any] = option({}, help="further `agentrl rollout` options; `{round}` in a value is the round")

    def __post_init__(self) -> None:
        require(self.samples_per_task >= 1, f"rollouts.samples_per_task must be >= 1, got {self.samples_per_task}")


@dataclass
class EvalSpec:
    """One evaluated method: whose policy, optionally a critic's best-of-K, best-of-N or beam search over a list of
    widths."""

    policy: str = option("sft", help="`base`, `sft`, or a learner's name (its policy of the round)")
    critic: str | None = option(None, help="a learner whose critic scores candidates (best_of / beam)")
    best_of: list[int] = option([], help="best-of-K for each K listed; the method name holds `{k}`")
    beam: list[int] = option([], help="math: step beam search for each width listed; the name holds `{b}`")
    best_of_n: list[int] = option([], help="best-of-N over whole solutions for each N listed; the name holds `{n}`")
    temperature: float | None = option(None, help="sampling temperature (default: greedy; 1.0 when sampling)")
    num_envs: int | None = option(None, help="parallel envs (default: the recipe's; beam search: tasks searched at once, 1)")
    beam_prior: float = option(0.0, help="beam: W of the policy-vote prior, `agentrl eval --beam-prior` (0: by V)")
    beam_prior_by: str = option("samples", help="beam: what the prior counts, `agentrl eval --beam-prior-by`")

    def __post_init__(self) -> None:
        require(self.beam_prior >= 0 and (not self.beam_prior or bool(self.beam)),
                f"beam_prior must be >= 0 and needs `beam` widths, got {self.beam_prior}")
        require(self.beam_prior_by in BEAM_PRIORS,
                f"beam_prior_by must be one of {', '.join(BEAM_PRIORS)}, got {self.beam_prior_by!r}")
        searches = [name for name in ("best_of", "beam", "best_of_n") if getattr(self, name)]
        require(len(searches) <= 1, f"an evaluation takes one of best_of, beam, best_of_n, not {' and '.join(searches)}")
        require(all(k >= 1 for k in [*self.best_of, *self.beam, *self.best_of_n]),
                "best_of, beam and best_of_n widths must be >= 1")
        require(not searches or self.critic is not None, "best_of / beam / best_of_n need a `critic`")


def _underscored(section: dict[str, Any]) -> dict[str, Any]:
    """Learn options as field names (``batch-size`` -> ``batch_size``), also inside ``first_round``."""
    return {str(k).replace("-", "_"): (_underscored(v) if k == "first_round" and isinstance(v, dict) else v)
            for k, v in section.items()}


def _fields_of(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@dataclass
class RecipeConfig(EnvOptions, PromptOptions, ModelOptions, SamplingOptions, TinyModelOptions):
    """An offline-RL experiment (see the module docstring); every stage resumes, results aggregate over seeds."""

    name: str = option("recipe", help="what the run is called in messages and the summary")
    out: str = option("runs/recipe", help="output folder (a rerun skips finished stages)")
    seeds: list[int] = option([0], help="training seeds (initialisation, data order, sampling); mean ± std over them")
    seed: int = option(0, help="data seed: task generation, generator datasets, demonstrations")
    model: str = option("tiny", help="base model: `tiny` (from scratch, tokenizer fitted to the demonstrations) or "
                        "a model folder / name")
    temperature: float | None = option(1.0, help="sampling temperature of the rollouts (evaluations are greedy)")
    tasks: TasksSpec | None = option(None, help="alfworld: generate tasks (under OUT/data) instead of `data`")
    demonstrations: DemonstrationsSpec | None = option(DemonstrationsSpec(), help="expert demonstrations (null: none)")
    learn: dict[str, Any] = option({}, help="`agentrl learn` options every learning stage starts from")
    sft: dict[str, Any] | None = option({"epochs": 1.0}, help="SFT on the demonstrations (null: start from the base)")
    rounds: int = option(1, help="rounds of (rollouts of the current policy -> learners -> evaluations)")
    next_policy: str | None = option(None, help="the learner whose policy rolls out the next round")
    rollouts: RolloutsSpec | None = option(RolloutsSpec(), help="rollouts of each round's policy (null: none)")
    learners: dict[str, dict[str, Any]] = option({}, help="name -> `agentrl learn` options (+ train_on, ...)")
    evaluations: dict[str, EvalSpec] = option({}, help="method name -> what to evaluate")
    eval_on: list[str] = option([], help="alfworld: evaluation splits; math: datasets (their test split); "
                                "default: the env's evaluation split")
    eval_episodes: int | None = option(None, help="cap on episodes per evaluation (default: every task once)")
    compare: list[str] = option([], help="paired bootstraps in the summary, each `A vs B` (method names), e.g. "
                                "`OREO vs SFT`: A - B over the (seed, task) pairs both finished")
    live: bool = option(False, help="replay the last evaluation live")
    only: list[str] = option([], help="run only stages whose name matches one of these shell patterns")

    def makes_data(self) -> bool:
        return self.tasks is not None

    def __post_init__(self) -> None:
        require(bool(self.seeds), "seeds: give at least one seed")
        require(self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}")
        require(self.tasks is None or self.env == "alfworld", "tasks: only alfworld tasks are generated")
        require(self.demonstrations is None or not self.demonstrations.augment_copies or self.env == "alfworld",
                "demonstrations.augment_copies: only alfworld demonstrations are renamed")
        super().__post_init__()
        self.eval_on = self.eval_on or [str(self.env_spec.eval_split)]
        require(self.eval_episodes is None or self.eval_episodes >= 1, "eval_episodes must be >= 1")
        require(self.rollouts is not None or not self.learners or all(
            "rollouts" not in self.train_on(n) for n in self.learners), "learners train on rollouts: give `rollouts`")
        require(self.next_policy is None or self.next_policy in self.learners,
                f"next_policy: no learner {self.next_policy!r} (learners: {', '.join(self.learners) or 'none'})")
        require(self.rounds == 1 or self.next_policy is not None, "rounds > 1 need `next_policy`")
        self._check_learn_options()
        self._check_evaluations()
        self.comparisons()

    def comparisons(self) -> list[tuple[str, str]]:
        """The ``compare`` entries as ``(A, B)`` method-name pairs (checked against the evaluated methods)."""
        pairs, names = [], method_names(self)
        for entry in self.compare:
            a, sep, b = entry.partition(" vs ")
            require(bool(sep), f"compare: {entry!r} must read `A vs B`")
            for name in (a.strip(), b.strip()):
                require(name in names, f"compare: {name!r} is not an evaluated method ({', '.join(names)})")
            pairs.append((a.strip(), b.strip()))
        return pairs

    def train_on(self, learner: str) -> list[str]:
        """The data sources of ``learner`` (default: demonstrations and this round's rollouts)."""
        sources = self.learners[learner].get("train_on", ["demonstrations", "rollouts"])
        return [sources] if isinstance(sources, str) else list(sources)

    def learn_options(self, section: dict[str, Any], round_: int) -> dict[str, Any]:
        """``learn`` defaults + a section's options (+ its ``first_round`` ones in round 1), recipe keys removed."""
        options = {**self.learn, **{k: v for k, v in section.items() if k not in RECIPE_LEARN_KEYS}}
        if round_ == 1:
            options.update(section.get("first_round", {}))
        return options

    def _check_learn_options(self) -> None:
        self.learn = _underscored(self.learn)
        self.sft = None if self.sft is None else _underscored(self.sft)
        self.learners = {name: _underscored(section) for name, section in self.learners.items()}
        sections = {"sft": self.sft or {}, **{f"learners.{n}": s for n, s in self.learners.items()}}
        valid = _fields_of(LearnConfig)
        for where, section in sections.items():
            for key in [*self.learn, *section, *section.get("first_round", {})]:
                if key not in valid and key not in RECIPE_LEARN_KEYS:
                    close = difflib.get_close_matches(key, valid, n=1)
                    raise ConfigError(f"{where}: unknown learn option `{key}`"
                                      + (f"; did you mean `{close[0]}`?" if close else ""))
            if where != "sft":
                require("algo" in section, f"{where}: give `algo` (oreo, sft, rs, dpo, ...)")
                bad = [s for s in self.train_on(where.split(".", 1)[1]) if s not in TRAIN_SOURCES]
                require(not bad, f"{where}.train_on: unknown {bad}; use {', '.join(TRAIN_SOURCES)}")
            from_dict(LearnConfig, {**self.learn_options(section, 1), "data": ["-"], "out": "-"}, where=where)

    def _check_evaluations(self) -> None:
        known = {"base", "sft", *self.learners}
        require(bool(self.evaluations), "evaluations: give at least one method")
        for method, spec in self.evaluations.items():
            require(spec.policy in known, f"evaluations.{method}.policy: {spec.policy!r} is not one of "
                    f"{', '.join(sorted(known))}")
            require(spec.critic is None or spec.critic in self.learners,
                    f"evaluations.{method}.critic: no learner {spec.critic!r}")
            require(spec.policy != "sft" or self.sft is not None, f"evaluations.{method}: there is no SFT stage")
            fields = {f for _, f, _, _ in string.Formatter().parse(method) if f}
            for widths, placeholder in ((spec.best_of, "k"), (spec.beam, "b"), (spec.best_of_n, "n")):
                require(len(widths) <= 1 or placeholder in fields,
                        f"evaluations.{method}: several widths need `{{{placeholder}}}` in the method name")
            require(fields <= {"k", "b", "n"}, f"evaluations.{method}: only {{k}}, {{b}} and {{n}} may appear in a name")


def expand(method: str, spec: EvalSpec) -> list[tuple[str, dict[str, Any]]]:
    """``("OREO+best-of-{k}", best_of [3, 5])`` -> ``[("OREO+best-of-3", {"best_of": 3}), ...]``."""
    if spec.best_of:
        return [(method.format(k=k), {"best_of": k}) for k in spec.best_of]
    if spec.beam:
        return [(method.format(b=b), {"beam": b}) for b in spec.beam]
    if spec.best_of_n:
        return [(method.format(n=n), {"best_of_n": n}) for n in spec.best_of_n]
    return [(method, {})]


def method_names(cfg: RecipeConfig) -> list[str]:
    """Every evaluated method in table order: fixed policies (base, SFT) once, then each round's."""
    fixed = [n for m, s in cfg.evaluations.items() if s.policy in ("base", "sft") for n, _ in expand(m, s)]
    learned = [n for m, s in cfg.evaluations.items() if s.policy not in ("base", "sft") for n, _ in expand(m, s)]
    if cfg.rounds > 1:
        learned = [f"{n} round {r}" for r in range(1, cfg.rounds + 1) for n in learned]
    return fixed + learned


def result_stem(method: str) -> str:
    """A method name as a file name (``OREO beam B=3`` -> ``OREO_beam_B3``)."""
    return method.replace(" ", "_").replace("=", "").replace("/", "-")
