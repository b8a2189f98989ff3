"""Episodes built by hand (no env, no model) for the replay and plot tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrl.trajectory import TrajectoryWriter
from agentrl.types import Candidate, Episode, Step

ROOM = (
    "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, you see "
    "a cabinet 1, a countertop 1, a fridge 1, a microwave 1, a sinkbasin 1, and a shelf 1.\n\n"
    "Your task is to: put a clean mug in coffeemachine."
)
ANSWERS = [
    "You arrive at countertop 1. On the countertop 1, you see a mug 1, and a spoon 2.",
    "You pick up the mug 1 from the countertop 1.",
    "You clean the mug 1 using the sinkbasin 1.",
    "You move the mug 1 to the coffeemachine 1.",
]
ACTIONS = ["go to countertop 1", "take mug 1 from countertop 1", "clean mug 1 with sinkbasin 1",
           "move mug 1 to coffeemachine 1"]


def make_episode(task_id: str = "pick_clean-Mug-7", success: bool = True, values: bool = True) -> Episode:
    """A 4-step ALFWorld-shaped episode; with ``values`` each step has a critic value and 2 candidates."""
    steps = []
    observations = [ROOM] + ANSWERS[:-1]
    for i, (obs, action) in enumerate(zip(observations, ACTIONS, strict=True)):
        value = -4.0 + i if values else None
        cands = [Candidate(action, value), Candidate("look", value - 1.5)] if values else None
        steps.append(Step(observation=obs, action=action, thought=f"thought number {i}", value=value,
                          candidates=cands, reward=1.0 if i == 3 and success else 0.0))
    messages = [{"role": "system", "content": "instructions"}, {"role": "user", "content": ROOM}]
    for action, answer in zip(ACTIONS, ANSWERS, strict=True):
        messages += [{"role": "assistant", "content": f"Action: {action}"}, {"role": "user", "content": answer}]
    return Episode(
        episode_id=f"alfworld/valid_unseen/{task_id}/s0", task_id=task_id, env_id="agentrl/ALFWorld-v0",
        split="valid_unseen", task_type="pick_clean_then_place_in_recep", policy="expert", success=success,
        reward=1.0 if success else 0.0, steps=steps, messages=messages,
    )


@pytest.fixture
def trajectory_file(tmp_path: Path) -> Path:
    """Two episodes: a success with critic values, then a failure without."""
    path = tmp_path / "episodes.jsonl"
    with TrajectoryWriter(path) as writer:
        writer.write(make_episode())
        writer.write(make_episode("look_at-Book-3", success=False, values=False))
    return path
