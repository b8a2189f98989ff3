"""Run a policy (react, expert, random) in parallel envs and write trajectories: `agentrl rollout`."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option, require
from agentrl.rollout import RolloutConfig

__all__ = ["Config", "run"]


@dataclass
class Config(RolloutConfig):
    """Run a policy in parallel environments and write one trajectory JSONL line per finished episode."""

    live: bool = option(False, help="watch one env's episodes live (plain lines when stdout is not a terminal)")
    live_slot: int = option(0, help="with --live: which env to watch")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.live_slot < self.num_envs, f"`live_slot` must be in 0..{self.num_envs - 1}, got {self.live_slot}")


def run(cfg: Config) -> int:
    from agentrl.models import ModelError
    from agentrl.rollout import rollout

    on_step = None
    if cfg.live:
        from agentrl.replay import LiveView

        on_step = LiveView(slot=cfg.live_slot, max_steps=cfg.max_steps)
    try:
        summary = rollout(cfg, on_step)
    except ModelError as err:
        from agentrl.config import ConfigError

        raise ConfigError(str(err)) from None
    return 0 if summary["written"] + summary["skipped"] == summary["planned"] else 1
