"""Iterate: roll out the current policy, learn from the data, evaluate; repeat for R rounds (OREO, DQO, OREAL, or
DAgger + SFT)."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option, require
from agentrl.options import EnvOptions, ModelOptions, PromptOptions, SamplingOptions, values
from agentrl.recipes import RecipeConfig, run_recipe
from agentrl.recipes.config import EvalSpec, RolloutsSpec


@dataclass
class Config(EnvOptions, PromptOptions, ModelOptions, SamplingOptions):
    """Options of `agentrl iterate` (the offline-RL recipe with R rounds, from a given policy, one seed)."""

    out: str = option("", help="output folder; a rerun skips finished stages of finished rounds")
    rounds: int = option(2, help="number of rounds R")
    policy: str = option("react", help="who collects a round's data: react (the policy samples -> OREO) | dagger "
                         "(the policy acts, the expert labels every state -> SFT on the labels of rounds 1..r and "
                         "--extra-data)")
    algo: str = option("oreo", help="learner of each round: oreo | dqo | oreal (on-policy: one round, one pass)")
    beta_schedule: str = option("0", help="policy dagger: the expert's share of the steps in round r: B, linear:N, "
                                "exp:D")
    model: str = option("", help="initial policy (e.g. OUT/policy of an SFT run)")
    split: str | None = option(None, help="split the rollouts are collected on (default: the env's train split)")
    eval_split: str | None = option(None, help="alfworld: split each round's policy is evaluated on (default: the "
                                    "env's evaluation split); math: the dataset's evaluation split")
    num_envs: int = option(2, help="parallel environments")
    temperature: float | None = option(1.0, help="rollout sampling temperature (evaluations are greedy)")
    extra_data: list[str] = option([], help="trajectory files added to every round's training data (e.g. expert demos)")
    accumulate: bool | None = option(
        None, help="train round r on the rollouts of rounds 1..r, else only round r (default: on, off for oreal)"
    )
    oreal_rm_warmup: int = option(
        10, help="oreal: steps of round 1 in which only the token reward model trains (later rounds start from "
        "the previous round's reward model, without warm-up)",
    )
    samples_per_task: int = option(5, help="rollouts per training task (the paper: 5)")
    episodes: int | None = option(None, help="cap on rollout episodes per round")
    eval_episodes: int | None = option(None, help="cap on evaluation episodes")
    level: str = option("token", help="OREO level: token | step | response")
    lr: float = option(5e-6, help="policy learning rate")
    critic_lr: float | None = option(None, help="critic learning rate (default: the learner's)")
    beta: float = option(0.03, help="OREO KL coefficient")
    epochs: float = option(1.0, help="passes over each round's data")
    batch_size: int = option(8, help="episodes per optimizer step")
    lora: bool = option(False, help="policy as LoRA adapter")

    def __post_init__(self) -> None:
        require(bool(self.out), "`out` is required")
        require(bool(self.model), "`model` is required: the initial policy")
        require(self.rounds >= 1, f"`rounds` must be >= 1, got {self.rounds}")
        require(self.policy in ("react", "dagger"), f"`policy` must be react or dagger, got {self.policy!r}")
        require(self.algo in ("oreo", "dqo", "oreal"), f"`algo` must be oreo, dqo or oreal, got {self.algo!r}")
        if self.accumulate is None:
            self.accumulate = self.algo != "oreal"  # OREAL learns on the current policy's samples only
        super().__post_init__()

    def recipe(self) -> RecipeConfig:
        """The recipe this command runs: no demonstrations or SFT stage; per round the policy's rollouts, one
        learner (--algo; with --policy dagger: SFT on every label so far), one evaluation."""
        common = {"lr": self.lr, "epochs": self.epochs, "batch_size": self.batch_size, "lora": self.lora,
                  "extra_data": self.extra_data}
        if self.policy == "dagger":  # DAgger's aggregated dataset: every label so far (the chats hold them)
            name, learner = "DAgger", {"algo": "sft", **common, "train_on": ["all_rollouts"]}
            collect = RolloutsSpec(samples_per_task=self.samples_per_task, episodes=self.episodes, policy="dagger",
                                   options={"beta_schedule": self.beta_schedule, "dagger_round": "{round}"})
        else:
            name = self.algo.upper()
            learner = {"algo": self.algo, "level": self.level, "beta": self.beta, **common,
                       "train_on": ["all_rollouts" if self.accumulate else "rollouts"]}
            if self.critic_lr is not None:
                learner["critic_lr"] = self.critic_lr
            if self.algo == "oreal":  # the token reward model carries over: it trains alone in round 1 only
                learner.update(oreal_rm_warmup=0, first_round={"oreal_rm_warmup": self.oreal_rm_warmup},
                               carry_critic=True)
            collect = RolloutsSpec(samples_per_task=self.samples_per_task, episodes=self.episodes)
        eval_on = [str(self.dataset)] if self.env == "math" else [self.eval_split or self.env_spec.eval_split]
        return RecipeConfig(
            **values(self, EnvOptions, PromptOptions, ModelOptions, SamplingOptions), name="iterate", out=self.out,
            seeds=[self.seed], demonstrations=None, sft=None, rounds=self.rounds, next_policy=name, rollouts=collect,
            learners={name: learner}, evaluations={name: EvalSpec(policy=name)}, eval_on=eval_on,
            eval_episodes=self.eval_episodes,
        )

def run(cfg: Config) -> int:
    run_recipe(cfg.recipe())
    return 0
