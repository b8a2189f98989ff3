"""agentrl/TextWorld-v0 on tw-make games."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("textworld")

import agentrl.envs  # noqa: E402,F401


def test_walkthrough_wins(textworld_games: Path) -> None:
    env = gym.make("agentrl/TextWorld-v0", games=textworld_games)
    ids = env.unwrapped.task_ids
    assert ids == sorted(ids) and len(ids) == 2
    for task_id in ids:
        obs, info = env.reset(options={"task_id": task_id})
        assert info["task"] and info["expert_action"] in info["admissible_actions"]
        total, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step(info["expert_action"])
            total += reward
        assert info["won"] and total >= 1.0


def test_actions_are_sanitised(textworld_games: Path) -> None:
    env = gym.make("agentrl/TextWorld-v0", games=textworld_games)
    env.reset(seed=0)
    for action in ["\\quit", "\x00\x07", "x" * 10_000, "quit", "restart", "é" * 300, 7]:
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs == "Nothing happens." and reward == 0.0 and not terminated
    obs, reward, terminated, _, _ = env.step("\x1b[2J\\")  # escape codes stripped; "[2J" reaches the parser
    assert "[" not in obs[:1] and reward == 0.0 and not terminated
    obs, *_ = env.step("look")
    assert obs.strip() and obs != "Nothing happens."
