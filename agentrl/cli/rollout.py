"""Run a policy (react, expert, random, best_of_k) in parallel envs and write trajectories: `agentrl rollout`."""

from __future__ import annotations

from agentrl.rollout import RolloutConfig as Config
from agentrl.rollout import rollout

__all__ = ["Config", "run"]


def run(cfg: Config) -> int:
    summary = rollout(cfg)
    return 0 if summary["written"] + summary["skipped"] == summary["planned"] else 1
