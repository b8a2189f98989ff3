"""Run a policy (react, expert, random) in parallel envs and write trajectories: `agentrl rollout`."""

from __future__ import annotations

from agentrl.rollout import RolloutConfig as Config

__all__ = ["Config", "run"]


def run(cfg: Config) -> int:
    from agentrl.models import ModelError
    from agentrl.rollout import rollout

    try:
        summary = rollout(cfg)
    except ModelError as err:
        from agentrl.config import ConfigError

        raise ConfigError(str(err)) from None
    return 0 if summary["written"] + summary["skipped"] == summary["planned"] else 1
