"""Hand-written trajectories for learner tests (ReAct turns, successes and failures of the same tasks)."""

from __future__ import annotations

from pathlib import Path

from agentrl.trajectory import TrajectoryWriter
from agentrl.types import Episode, Step

SYSTEM = "You are in the middle of a room. Think, then act."


def episode(task: int, sample: int, success: bool, turns: int = 2) -> Episode:
    """A short ALFWorld-like chat: system, task, then ``turns`` assistant/observation exchanges."""
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Your task is to: put mug {task} in fridge 1."},
    ]
    steps = []
    for t in range(turns):
        action = "go to countertop 1" if t == 0 else (f"move mug {task} to fridge 1" if success else "look")
        messages.append({"role": "assistant", "content": f"Think: I need mug {task}.\nAction: {action}"})
        observation = (
            "You arrive at countertop 1." if t == 0 else ("You win." if success else "Nothing happens.")
        )
        messages.append({"role": "user", "content": observation})
        steps.append(Step(observation=observation, action=action, thought=f"I need mug {task}."))
    return Episode(
        episode_id=f"test/train/t{task}/s{sample}", task_id=f"t{task}", env_id="agentrl/Test-v0", split="train",
        task_type="pick", policy="expert", success=success, reward=1.0 if success else 0.0, steps=steps,
        messages=messages[:-1],  # the chat ends with the last assistant turn
    )  # fmt: skip


def write_dataset(path: Path, tasks: int = 4) -> Path:
    """``tasks`` tasks, each with one success and one failure."""
    with TrajectoryWriter(path) as writer:
        for task in range(tasks):
            writer.write(episode(task, 0, True))
            writer.write(episode(task, 1, False))
    return path
