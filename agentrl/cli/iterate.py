"""Iterative OREO: roll out the current policy, learn from the data, evaluate; repeat for R rounds."""

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
    model: str = option("", help="initial policy (e.g. OUT/policy of an SFT run)")
    split: str | None = option(None, help="split the rollouts are collected on (default: the env's train split)")
    eval_split: str | None = option(None, help="alfworld: split each round's policy is evaluated on (default: the "
                                    "env's evaluation split); math: the dataset's evaluation split")
    num_envs: int = option(2, help="parallel environments")
    temperature: float | None = option(1.0, help="rollout sampling temperature (evaluations are greedy)")
    extra_data: list[str] = option([], help="trajectory files added to every round's training data (e.g. expert demos)")
    accumulate: bool = option(True, help="train round r on the rollouts of rounds 1..r (else only round r)")
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
        super().__post_init__()

    def recipe(self) -> RecipeConfig:
        """The recipe this command runs: no demonstrations or SFT, an OREO learner per round, one evaluation."""
        learner = {"algo": "oreo", "level": self.level, "lr": self.lr, "beta": self.beta, "epochs": self.epochs,
                   "batch_size": self.batch_size, "lora": self.lora,
                   "train_on": ["all_rollouts" if self.accumulate else "rollouts"], "extra_data": self.extra_data}
        if self.critic_lr is not None:
            learner["critic_lr"] = self.critic_lr
        eval_on = [str(self.dataset)] if self.env == "math" else [self.eval_split or self.env_spec.eval_split]
        return RecipeConfig(
            **values(self, EnvOptions, PromptOptions, ModelOptions, SamplingOptions), name="iterate", out=self.out,
            seeds=[self.seed], demonstrations=None, sft=None, rounds=self.rounds, next_policy="OREO",
            rollouts=RolloutsSpec(samples_per_task=self.samples_per_task, episodes=self.episodes),
            learners={"OREO": learner}, evaluations={"OREO": EvalSpec(policy="OREO")}, eval_on=eval_on,
            eval_episodes=self.eval_episodes,
        )


def run(cfg: Config) -> int:
    run_recipe(cfg.recipe())
    return 0
