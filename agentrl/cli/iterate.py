"""Iterate: roll out the current policy, learn from the data, evaluate; repeat for R rounds (OREO, DQO, OREAL, or
DAgger + SFT)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentrl.config import option, require
from agentrl.options import EnvOptions, ModelOptions, SamplingOptions, values


@dataclass
class Config(EnvOptions, ModelOptions, SamplingOptions):
    """Options of `agentrl iterate`; round r lives in OUT/round-r/ (rollouts.jsonl, ALGO/ or sft/, eval.json)."""

    out: str = option("", help="output folder; a rerun skips finished stages of finished rounds")
    rounds: int = option(2, help="number of rounds R")
    policy: str = option("react", help="who collects a round's data: react (the policy samples -> OREO) | dagger "
                         "(the policy acts, the expert labels every state -> SFT on the labels of rounds 1..r and "
                         "--extra-data)")
    beta_schedule: str = option("0", help="policy dagger: the expert's share of the steps in round r: B, linear:N, "
                                "exp:D")
    thoughts: str | None = option(None, help="on|off: turns with or without `Think:` (default: the model's "
                                  "agent_config.json)")
    history: int | None = option(None, help="prompt keeps the last N turns, -1: all (default: the model's "
                                 "agent_config.json)")
    example: bool | None = option(None, help="in-context example in the prompt (default: the model's "
                                  "agent_config.json)")
    action_space: str | None = option(None, help="free | admissible (default: the model's agent_config.json)")
    model: str = option("", help="initial policy (e.g. OUT/policy of an SFT run)")
    split: str | None = option(None, help="split the rollouts are collected on (default: the env's train split)")
    eval_split: str | None = option(None, help="split each round's policy is evaluated on (default: the env's "
                                    "evaluation split)")
    num_envs: int = option(2, help="parallel environments")
    temperature: float | None = option(1.0, help="rollout sampling temperature (evaluations are greedy)")
    algo: str = option("oreo", help="learner of each round: oreo | dqo | oreal (on-policy: one round, one pass)")
    extra_data: list[str] = option([], help="trajectory files added to every round's training data (e.g. expert demos)")
    accumulate: bool | None = option(
        None, help="train round r on the rollouts of rounds 1..r, else only round r (default: on, off for oreal)"
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
    oreal_rm_warmup: int = option(
        10, help="oreal: steps of round 1 in which only the token reward model trains (later rounds start from "
        "the previous round's reward model, without warm-up)",
    )
    lora: bool = option(False, help="policy as LoRA adapter")

    def __post_init__(self) -> None:
        require(bool(self.out), "`out` is required")
        require(bool(self.model), "`model` is required: the initial policy")
        require(self.rounds >= 1, f"`rounds` must be >= 1, got {self.rounds}")
        require(self.algo in ("oreo", "dqo", "oreal"), f"`algo` must be oreo, dqo or oreal, got {self.algo!r}")
        require(self.policy in ("react", "dagger"), f"`policy` must be react or dagger, got {self.policy!r}")
        if self.accumulate is None:
            self.accumulate = self.algo != "oreal"  # OREAL learns on the current policy's samples only
        super().__post_init__()
        self.eval_split = self.eval_split or self.env_spec.eval_split


def run(cfg: Config) -> int:
    from agentrl import pipeline
    from agentrl.pipeline import Stages

    out = Path(cfg.out)
    stages = Stages(out)
    # Every round runs in the same env with the same model options; only the policy (model) and split change.
    env = {k: v for k, v in values(cfg, EnvOptions, ModelOptions).items() if k not in ("split", "model")}
    env.update(thoughts=cfg.thoughts, history=cfg.history, example=cfg.example, action_space=cfg.action_space)
    policy = cfg.model
    data: list[str] = list(cfg.extra_data)
    results = []
    learn_kwargs = {} if cfg.critic_lr is None else {"critic_lr": cfg.critic_lr}
    for r in range(1, cfg.rounds + 1):
        folder = out / f"round-{r}"
        rollouts = folder / "rollouts.jsonl"
        collect = {"policy": "dagger", "beta_schedule": cfg.beta_schedule, "dagger_round": r} \
            if cfg.policy == "dagger" else {"policy": "react"}
        stages.run(f"round {r}: rollouts", pipeline.finished(rollouts), pipeline.rollout,
                   **{**env, **values(cfg, SamplingOptions), "seed": cfg.seed + r}, split=cfg.split, **collect,
                   model=policy, samples_per_task=cfg.samples_per_task, episodes=cfg.episodes, out=str(rollouts))
        data = [*data, str(rollouts)] if cfg.accumulate else [*cfg.extra_data, str(rollouts)]
        if cfg.policy == "dagger":  # DAgger's aggregated dataset: every label so far (the chats hold them)
            learned, name = folder / "sft", "DAgger"
            stages.run(f"round {r}: SFT on the labels", learned / "policy" / "config.json", pipeline.learn,
                       algo="sft", data=data, model=policy, out=str(learned), lr=cfg.lr, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lora=cfg.lora, seed=cfg.seed + r)
        else:
            learned, name = folder / cfg.algo, cfg.algo.upper()
            if cfg.algo == "oreal":  # the token reward model carries over: it trains alone in round 1 only
                previous = out / f"round-{r - 1}" / "oreal" / "critic"
                learn_kwargs.update(oreal_rm_warmup=cfg.oreal_rm_warmup if r == 1 else 0,
                                    critic_init=str(previous) if r > 1 else None)  # fmt: skip
            stages.run(f"round {r}: {name}", learned / "critic", pipeline.learn, algo=cfg.algo, data=data,
                       model=policy, out=str(learned), level=cfg.level, lr=cfg.lr, beta=cfg.beta, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lora=cfg.lora, seed=cfg.seed + r, **learn_kwargs)
        policy = str(learned / "policy")
        result = folder / "eval.json"
        stages.run(f"round {r}: evaluate", result, pipeline.evaluate, **env, split=cfg.eval_split, policy="react",
                   model=policy, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                   episodes=cfg.eval_episodes, method=f"{name} round {r}", out=str(result),
                   trajectories=str(result.with_suffix(".jsonl")))
        results.append(result)
    pipeline.compare(results)
    return 0
