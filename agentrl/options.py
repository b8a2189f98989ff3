"""Option groups declared once and composed into every command's config (as TRL's ``ModelConfig``).

A command config inherits the groups it needs, e.g. ``RolloutConfig(EnvOptions, AgentOptions, OutputOptions)``;
YAML keys and ``--flags`` stay flat (``--env``, ``--model``, ``--temperature``, ``--out``) and ``--help`` lists
them under their group's title. Each group checks its own fields in ``__post_init__`` and then calls
``super().__post_init__()``, so a composed config runs every group's checks; checks that span groups live in the
composed config. Where a new option goes:

* :class:`EnvOptions`: which environment, split and data; step cap; parallel envs.
* :class:`PromptOptions`: the agent format, how its turns read: thoughts, history window, in-context example,
  action space, the admissible list, anti-loop (``None`` takes the model's ``agent_config.json``).
* :class:`PolicyOptions`: how the agent chooses: policy, critic, best-of-K, DAgger's beta.
* :class:`ModelOptions`: which model and how it is run (backend, device, dtype, KV cache).
* :class:`SamplingOptions`: decoding (temperature, top-p, token cap) and the seed.
* :class:`OutputOptions`: where results go, resume, progress and the live view.
* :class:`TinyModelOptions`: sizes of a from-scratch model (``model: tiny`` in recipes).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from agentrl import agent_format
from agentrl.agent_format import FULL_HISTORY, AgentFormat, AgentFormatError
from agentrl.backends.base import CHOICE_SCORES, Sampling
from agentrl.backends.vllm_backend import INSTALL_HINT
from agentrl.config import ConfigError, on_off, option, require
from agentrl.envs import SPECS, EnvSpec
from agentrl.envs.math.datasets import dataset_splits
from agentrl.policies import MODEL_POLICIES, POLICIES
from agentrl.policies.action_space import ACTION_SPACES
from agentrl.policies.dagger import beta_at

BACKENDS = ("transformers", "openai", "vllm")
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_BEST_OF = 5  # K of `--policy best_of_k` without --best-of (the paper's gains saturate at K=5)


class OptionGroup:
    """End of the ``__post_init__`` chain of the groups; ``title`` heads the group in ``--help``."""

    title: ClassVar[str] = "options"

    def __post_init__(self) -> None:
        """Nothing left to check."""


@dataclasses.dataclass
class EnvOptions(OptionGroup):
    """Which environment, split and data; step cap; parallel envs (every env is listed in ``agentrl.envs.SPECS``)."""

    title: ClassVar[str] = "environment"
    split_role: ClassVar[str] = "train"  # which split a command defaults to: the env's train or eval split

    env: str = option("alfworld", help=f"environment: {', '.join(SPECS)}")
    data: str | None = option(None, help="alfworld: data root holding json_2.1.1/<split>/... (agentrl gen alfworld)")
    split: str | None = option(None, help="split (default: the env's train split for rollouts, its evaluation split "
                               "for eval: alfworld train / valid_unseen, math train / test; a dataset with one "
                               "split uses it)")
    dataset: str | None = option(None, help="math: dataset name (gsm8k-test-100, gsm-symbolic, chain-sum, "
                                 "chain-sum-long, jsonl:PATH; default gsm8k-test-100)")
    problems: int = option(1000, help="math: problems a generator dataset (gsm-symbolic, chain-sum[-long]) makes "
                           "per split")
    games: str | None = option(None, help="textworld: game file or folder")
    max_steps: int | None = option(None, help="step cap per episode (default: the env's: "
                                   + ", ".join(f"{s.name} {s.max_steps}" for s in SPECS.values()) + ")")
    num_envs: int = option(1, help="parallel environments (worker processes; beam search: tasks searched together)")
    step_timeout: float = option(60.0, help="seconds before a hung env step/reset marks its episode `error`")

    def __post_init__(self) -> None:
        require(self.env in SPECS, f"`env` must be one of {', '.join(SPECS)}, got {self.env!r}")
        spec = self.env_spec
        for name, hint in spec.required.items():
            require(getattr(self, name) is not None or self.makes_data(), f"{self.env} needs `{name}`: {hint}")
        if self.data is not None and self.env == "alfworld" and not self.makes_data():
            require(Path(self.data).is_dir(), f"`data`: no such folder: {self.data}")
        if self.games is not None and self.env == "textworld":
            require(Path(self.games).exists(), f"`games`: no such file or folder: {self.games}")
        splits = spec.splits
        if self.env == "math":
            self.dataset = self.dataset or "gsm8k-test-100"
            try:
                splits = dataset_splits(self.dataset)
            except ValueError as err:
                require(False, f"`dataset`: {err}")
            if self.dataset.startswith("jsonl:"):
                path = Path(self.dataset[len("jsonl:"):])
                require(path.is_file(), f"`dataset`: {'not a file' if path.exists() else 'no such file'}: {path}")
            require(self.problems >= 1, f"`problems` must be >= 1, got {self.problems}")
        if self.split is None:
            default = spec.eval_split if self.split_role == "eval" else spec.train_split
            self.split = splits[0] if len(splits) == 1 else default
        require(not splits or self.split in splits,
                f"`split`: {self.dataset if self.env == 'math' else self.env} has no split {self.split!r} "
                f"(its splits: {', '.join(splits)})")
        self.max_steps = spec.max_steps if self.max_steps is None else self.max_steps
        require(self.max_steps >= 1, f"`max_steps` must be >= 1, got {self.max_steps}")
        require(self.num_envs >= 1, f"`num_envs` must be >= 1, got {self.num_envs}")
        require(self.step_timeout > 0, f"`step_timeout` must be > 0, got {self.step_timeout}")
        super().__post_init__()

    def makes_data(self) -> bool:
        """Whether the config creates its env's data itself (a recipe that generates tasks); then none is needed."""
        return False

    @property
    def env_spec(self) -> EnvSpec:
        """The registry entry of ``env``."""
        return SPECS[self.env]

    @property
    def env_id(self) -> str:
        """The Gymnasium id of ``env``."""
        return SPECS[self.env].id

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make(self.env_id, ...)``: the env's options and the step cap."""
        kwargs = {keyword: getattr(self, name) for keyword, name in self.env_spec.kwargs}
        return {"max_episode_steps": self.max_steps, **kwargs}

    def env_label(self) -> str:
        """The env and its options in a few words, for error messages (``math (dataset jsonl:x, split test)``)."""
        shown = ", ".join(f"{name} {getattr(self, name)}" for _, name in self.env_spec.kwargs if name != "problems")
        return f"{self.env} ({shown})" if shown else self.env


@dataclasses.dataclass
class PromptOptions(OptionGroup):
    """The agent format: how the agent's turns read (``None``: the model's ``agent_config.json``, else the default)."""

    title: ClassVar[str] = "prompt"

    history: int | None = option(None, help="prompt keeps only the last N turns; -1: the whole chat (default: the "
                                 "model's agent_config.json, else the whole chat)")
    example: bool | None = option(None, help="put the in-context example in the system prompt (default: the model's "
                                  "agent_config.json, else on)")
    thoughts: str | None = option(None, help="on: `Think: ...` + `Action: ...` turns; off: thought-free `Action: ...` "
                                  "turns (default: the model's agent_config.json, else on)")
    action_space: str | None = option(None, help="free: the model writes its command; admissible: the command is "
                                      "chosen among the env's admissible ones (best-of-K: the top-K distinct ones; "
                                      "default: the model's agent_config.json, else free)")
    choice_score: str = option("mean", help="admissible: rank commands by mean (length-normalised) or sum log-prob")
    list_admissible: bool | None = option(None, help="append the admissible commands to every observation the "
                                          "policy sees (default: off)")
    anti_loop: int = option(0, help="admissible: mask a command that produced no change of state for the next N "
                            "steps (0: off)")

    def __post_init__(self) -> None:
        require(self.history is None or self.history >= FULL_HISTORY,
                f"`history` must be >= 0 (or -1: the whole chat), got {self.history}")
        if self.thoughts is not None:
            self.thoughts = on_off(self.thoughts, "thoughts")
        require(self.action_space is None or self.action_space in ACTION_SPACES,
                f"`action_space` must be one of {', '.join(ACTION_SPACES)}, got {self.action_space!r}")
        require(self.choice_score in CHOICE_SCORES,
                f"`choice_score` must be one of {', '.join(CHOICE_SCORES)}, got {self.choice_score!r}")
        require(self.anti_loop >= 0, f"`anti_loop` must be >= 0, got {self.anti_loop}")
        require(not self.anti_loop or self.actions == "admissible",
                "--anti-loop masks admissible commands: use it with --action-space admissible")
        super().__post_init__()

    def agent_format(self, generator: Any = None) -> AgentFormat:
        """The agent format in force: these options, else the model's ``agent_config.json`` (its folder, or what
        ``generator`` reports: ``agentrl serve`` publishes it), else the defaults (see
        :func:`agentrl.agent_format.of_run`; mismatch warnings are printed where the policy is built)."""
        try:
            return agent_format.of_run(self, generator)[0]
        except AgentFormatError as err:
            raise ConfigError(str(err)) from None

    @property
    def actions(self) -> str:
        """The action space in force: ``free`` or ``admissible``."""
        return self.agent_format().action_space

    @property
    def with_thoughts(self) -> bool:
        """Assistant turns carry a ``Think:`` line (``--thoughts on``, or the model's format)."""
        return self.agent_format().thoughts


@dataclasses.dataclass
class PolicyOptions(OptionGroup):
    """How the agent chooses its actions: policy, critic, best-of-K, DAgger's beta."""

    title: ClassVar[str] = "policy"

    policy: str = option("react", help="policy: react (LLM), expert, random, best_of_k (react + critic; "
                         "--best-of K selects it too), dagger (the LLM acts, the expert labels every state)")
    beta_schedule: str = option("0", help="policy dagger: the expert's share of the steps in round r: B, linear:N "
                                "(1 - r/N), exp:D (D^r)")
    dagger_round: int = option(1, help="policy dagger: the round r the beta schedule is read at (1 = the first round "
                               "after the demonstrations)")
    logprob_weight: float = option(0.0, help="best-of-K over admissible commands: c in score = V + c * log pi")
    critic: str | None = option(None, help="critic folder (OUT/critic of `agentrl learn`) for best-of-K and beams")
    best_of: int | None = option(None, help="best-of-K: sample K actions per step and act on the critic's best "
                                 f"(--policy best_of_k alone: K={DEFAULT_BEST_OF})")

    def __post_init__(self) -> None:
        require(self.policy in POLICIES, f"`policy` must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        require(self.dagger_round >= 0, f"`dagger_round` must be >= 0, got {self.dagger_round}")
        try:
            self.beta  # noqa: B018 - checks the schedule
        except ValueError as err:
            require(False, f"`beta_schedule`: {err}")
        if self.best_of is not None:
            require(self.best_of >= 1, f"--best-of must be >= 1, got {self.best_of}")
            require(self.policy in MODEL_POLICIES,
                    f"--best-of samples from the LLM: use --policy react (got {self.policy})")
            self.policy = "best_of_k"
        if self.policy == "best_of_k":
            self.best_of = DEFAULT_BEST_OF if self.best_of is None else self.best_of
            self.require_critic(f"--best-of {self.best_of}")
        super().__post_init__()

    def require_critic(self, flag: str) -> None:
        """``flag`` (best-of-K, beam search) scores candidates with a critic: ``critic`` must be a folder."""
        require(self.critic is not None, f"{flag} needs --critic DIR (a critic written by `agentrl learn`)")
        require(Path(str(self.critic)).is_dir(), f"--critic: no such folder: {self.critic}")

    @property
    def beta(self) -> float:
        """Policy dagger: the probability that the expert acts at a step (the schedule at ``dagger_round``)."""

        return beta_at(self.beta_schedule, self.dagger_round)

    @property
    def uses_model(self) -> bool:
        """Whether the policy generates text (and so needs a model and a backend)."""
        return self.policy in MODEL_POLICIES


@dataclasses.dataclass
class ModelOptions(OptionGroup):
    """Which model, and how it runs."""

    title: ClassVar[str] = "model"

    model: str = option("default", help="model: local folder, hub name, LoRA adapter folder, or `default` "
                        "(SmolLM2-135M-Instruct)")
    backend: str = option("transformers", help=f"generation backend: {', '.join(BACKENDS)}")
    base_url: str | None = option(None, help="openai backend: endpoint, e.g. http://127.0.0.1:8000/v1")
    device: str = option("cpu", help="torch device of the model and the critic (cpu, cuda)")
    dtype: str = option("float32", help=f"torch dtype of the model and the critic: {', '.join(DTYPES)}")
    carry_cache: bool = option(True, help="transformers backend: keep each env's KV cache across turns")

    def __post_init__(self) -> None:
        require(self.backend in BACKENDS, f"`backend` must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        require(self.dtype in DTYPES, f"`dtype` must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        super().__post_init__()


@dataclasses.dataclass
class SamplingOptions(OptionGroup):
    """Decoding, and the seed of env resets and sampling."""

    title: ClassVar[str] = "sampling"

    temperature: float | None = option(None, help="sampling temperature (default: 0 = greedy; 1.0 where K "
                                       "candidates are sampled: best-of-K with K > 1, beam search)")
    top_p: float = option(1.0, help="nucleus sampling mass")
    max_new_tokens: int = option(128, help="token cap per assistant turn")
    seed: int = option(0, help="seed of env resets and sampling")

    def __post_init__(self) -> None:
        require(self.temperature is None or self.temperature >= 0, f"`temperature` must be >= 0, got {self.temperature}")
        require(0 < self.top_p <= 1, f"`top_p` must be in (0, 1], got {self.top_p}")
        require(self.max_new_tokens >= 1, f"`max_new_tokens` must be >= 1, got {self.max_new_tokens}")
        super().__post_init__()


@dataclasses.dataclass
class OutputOptions(OptionGroup):
    """Where results go; resume, progress and the live view."""

    title: ClassVar[str] = "output"

    out: str = option("", help="output file")
    resume: bool = option(False, help="continue --out: keep what is done, run only the rest")
    progress: bool = option(True, help="show progress (with an ETA) and the summary table")
    live: bool = option(False, help="watch one env's episodes live (plain lines when stdout is not a terminal)")
    live_slot: int = option(0, help="with --live: which env to watch")

    def __post_init__(self) -> None:
        require(bool(self.out), "`out` is required: the file to write (e.g. --out runs/expert.jsonl)")
        require(not Path(self.out).is_dir(), f"`out`: {self.out} is a folder; give a file name")
        require(self.live_slot >= 0, f"`live_slot` must be >= 0, got {self.live_slot}")
        super().__post_init__()


@dataclasses.dataclass
class AgentOptions(PolicyOptions, PromptOptions, ModelOptions, SamplingOptions):
    """The agent: a policy, its model and its decoding (what :func:`agentrl.build.build_policy` builds)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.agent_format()  # a damaged agent_config.json in the model folder fails here, naming file and key
        # K candidates are sampled (temperature 1) unless they are the top-K admissible commands (no sampling).
        sampled = (self.best_of or 1) > 1 and self.actions != "admissible"
        if self.temperature is None:
            self.temperature = 1.0 if sampled else 0.0
        require(not sampled or self.temperature > 0,
                f"best-of-{self.best_of} samples: set --temperature > 0 (got {self.temperature}; or choose among "
                "--action-space admissible)")
        require(not (self.actions == "admissible" and self.backend == "vllm" and (self.best_of or 1) > 1),
                "best-of-K over admissible commands ranks the top K: use --backend transformers (or openai with "
                "`agentrl serve`); vLLM's guided choice samples")
        require(not self.logprob_weight or self.actions == "admissible",
                "--logprob-weight weighs the policy's log-prob of admissible commands: use --action-space admissible")
        if self.uses_model and self.backend == "vllm":

            require(importlib.util.find_spec("vllm") is not None, INSTALL_HINT)
        if self.uses_model and self.backend == "openai":
            require(self.base_url is not None, "the openai backend needs `base_url` (e.g. http://127.0.0.1:8000/v1)")

    def sampling(self) -> Sampling:
        """The backends' :class:`~agentrl.backends.base.Sampling` of these options."""
        return Sampling(temperature=float(self.temperature or 0.0), top_p=self.top_p,
                        max_new_tokens=self.max_new_tokens, seed=self.seed, choice_score=self.choice_score)


@dataclasses.dataclass
class RunOptions(EnvOptions, AgentOptions, OutputOptions):
    """An agent in an environment, writing somewhere: what rollouts and evaluations share (and cross-checks)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.live_slot < self.num_envs, f"`live_slot` must be in 0..{self.num_envs - 1}, got {self.live_slot}")
        if not self.env_spec.admissible:
            require(self.policy != "random", f"the random policy needs admissible actions, which {self.env} lacks")
            require(self.actions != "admissible",
                    f"{self.env} lists no admissible commands: use --action-space free")
            require(not self.list_admissible, f"{self.env} lists no admissible commands to show (--list-admissible)")


@dataclasses.dataclass
class TinyModelOptions(OptionGroup):
    """Sizes of a from-scratch Llama whose tokenizer is fitted to the task's own text (``model: tiny``)."""

    title: ClassVar[str] = "tiny model"

    tokenizer: str = option("bpe", help="tiny model: `bpe` (byte-level BPE) or `word` (one token per word or number)")
    hidden_size: int = option(128, help="tiny model: hidden size")
    num_layers: int = option(4, help="tiny model: layers")
    num_heads: int = option(4, help="tiny model: attention heads")
    vocab_size: int = option(1024, help="tiny model: vocabulary fitted to the demonstrations (word: a cap, rarer "
                             "words become <|unk|>)")
    split_digits: bool = option(False, help="tiny model, bpe: one token per digit (numbers never merge into pieces)")

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "vocab_size"):
            require(getattr(self, name) >= 1, f"`{name}` must be >= 1, got {getattr(self, name)}")
        require(self.tokenizer in ("bpe", "word"), f"`tokenizer` must be bpe or word, got {self.tokenizer!r}")
        require(self.hidden_size % self.num_heads == 0,
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_heads` ({self.num_heads})")
        super().__post_init__()

    def tiny_sizes(self) -> dict[str, Any]:
        """Keywords of :func:`agentrl.models.tiny_model_from_trajectories`."""
        names = ("tokenizer", "hidden_size", "num_layers", "num_heads", "vocab_size", "split_digits")
        return {name: getattr(self, name) for name in names}


def values(cfg: Any, *groups: type) -> dict[str, Any]:
    """The values of ``cfg``'s fields that ``groups`` declare, to build another config from them.

    ``RolloutConfig(**values(iterate_cfg, EnvOptions, ModelOptions), out=...)`` passes one config's env and
    model options to another.
    """
    names = {f.name for group in groups for f in dataclasses.fields(group)}
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in names}
