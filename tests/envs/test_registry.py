"""Every registered agentrl env passes Gymnasium's env checker."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agentrl.envs
from agentrl.envs import ENV_IDS


def test_registry_has_all_envs() -> None:
    registered = {env_id for env_id in gym.registry if env_id.startswith("agentrl/")}
    assert registered == set(ENV_IDS)


@pytest.mark.parametrize("env_id", agentrl.envs.ENV_IDS)
def test_check_env(env_id: str, request: pytest.FixtureRequest) -> None:
    kwargs: dict = {}
    if env_id == "agentrl/ALFWorld-v0":
        kwargs = {"data": request.getfixturevalue("alfworld_root"), "split": "train"}
    elif env_id == "agentrl/TextWorld-v0":
        kwargs = {"games": request.getfixturevalue("textworld_games")}
    elif env_id == "agentrl/Math-v0":
        kwargs = {"dataset": "gsm8k-test-100", "split": "test"}
    env = gym.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert {"task_id", "task_type", "task", "admissible_actions", "won"} <= set(info)
    assert isinstance(info["admissible_actions"], list)
    env.close()


def test_import_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.chdir(tmp_path)
    for name in ("agentrl.envs.alfworld.env", "agentrl.envs.math.grade", "agentrl.envs.textworld_env",
                 "agentrl.envs.workers"):
        importlib.import_module(name)


def test_one_registry_one_step_cap() -> None:
    """Gymnasium's TimeLimit, the rollout default and the eval default are the same number, from SPECS."""
    from agentrl.envs import SPECS
    from agentrl.evaluate import EvalConfig
    from agentrl.rollout import RolloutConfig

    assert set(SPECS) == {"alfworld", "textworld", "math"}
    assert SPECS["alfworld"].max_steps == 40 and SPECS["math"].max_steps == 20
    for spec in SPECS.values():
        assert gym.spec(spec.id).max_episode_steps == spec.max_steps
        assert gym.spec(spec.id).entry_point == spec.entry_point
    math = {"env": "math", "policy": "expert", "out": "x.json"}
    assert RolloutConfig(**math).max_steps == EvalConfig(**math).max_steps == 20
    assert RolloutConfig(**math).env_kwargs()["max_episode_steps"] == 20
    assert RolloutConfig(**math, dataset="chain-sum").split == "train"
    assert EvalConfig(**math, dataset="chain-sum").split == "test"
    assert RolloutConfig(**math).split == "test"  # gsm8k-test-100 has one split: rollouts use it too
