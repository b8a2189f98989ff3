"""Run a policy (react, expert, random, best_of_k) in parallel envs and write trajectories: `agentrl rollout`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentrl.config import option, require
from agentrl.rollout import RolloutConfig

__all__ = ["Config", "run"]


@dataclass
class Config(RolloutConfig):
    """Run a policy in parallel environments and write one trajectory JSONL line per finished episode."""

    live: bool = option(False, help="watch one env's episodes live (plain lines when stdout is not a terminal)")
    live_slot: int = option(0, help="with --live: which env to watch")
    critic: str | None = option(None, help="policy best_of_k: critic folder (e.g. OUT/critic of `agentrl learn`)")
    best_of: int = option(5, help="policy best_of_k: candidate actions sampled per step")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.live_slot < self.num_envs, f"`live_slot` must be in 0..{self.num_envs - 1}, got {self.live_slot}")
        if self.policy == "best_of_k":
            require(self.critic is not None, "policy best_of_k needs --critic DIR (a critic written by `agentrl learn`)")
            require(Path(str(self.critic)).is_dir(), f"--critic: no such folder: {self.critic}")
            require(self.best_of >= 1, f"--best-of must be >= 1, got {self.best_of}")
            require(self.best_of == 1 or self.temperature > 0 or self.actions == "admissible",
                    "policy best_of_k samples: set --temperature > 0 (or choose among --action-space admissible)")


def run(cfg: Config) -> int:
    from agentrl.models import ModelError
    from agentrl.rollout import rollout

    on_step = None
    if cfg.live:
        from agentrl.replay import LiveView

        on_step = LiveView(slot=cfg.live_slot, max_steps=cfg.max_steps)
    try:
        policy = generator = None
        if cfg.policy == "best_of_k":
            from agentrl.backends.base import Sampling
            from agentrl.policies.best_of_k import make
            from agentrl.rollout import make_generator

            generator = make_generator(cfg)
            sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=cfg.seed, choice_score=cfg.choice_score)
            policy = make(generator=generator, sampling=sampling, history=cfg.history, example=cfg.example,
                          thoughts=cfg.with_thoughts, action_space=cfg.actions, critic=str(cfg.critic), k=cfg.best_of, device=cfg.device,
                          dtype=cfg.dtype)
        summary = rollout(cfg, on_step, policy=policy, generator=generator)
    except ModelError as err:
        from agentrl.config import ConfigError

        raise ConfigError(str(err)) from None
    return 0 if summary["written"] + summary["skipped"] == summary["planned"] else 1
