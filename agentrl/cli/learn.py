"""Train a policy from trajectories: OREO or DQO (policy + critic), OREAL (policy + token reward model), SFT,
rejection sampling or DPO."""

from __future__ import annotations

from agentrl.learn_config import ALGOS, learn
from agentrl.learn_config import LearnConfig as Config

__all__ = ["ALGOS", "Config", "run"]


def run(cfg: Config) -> int:
    learn(cfg)
    return 0
