"""A Gymnasium env for EnvPool integration tests: ``gymnasium.make("hang_env:Corridor-v0")``.

Task ``tK``: ``open door`` then ``go to room K % 4`` wins (the expert action is in ``info``). Task ``t_hang``
sleeps forever on its first step and task ``t_crash`` raises, like a stuck or broken game engine.
"""

from __future__ import annotations

import time

import gymnasium as gym
from gymnasium.envs.registration import register, registry


class Corridor(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, tasks: int = 4):
        self.task_ids = sorted([f"t{k}" for k in range(tasks)] + ["t_crash", "t_hang"])
        self.observation_space = gym.spaces.Text(1000)
        self.action_space = gym.spaces.Text(1000)
        self.task, self.opened = "t0", False

    def _info(self, won: bool = False) -> dict:
        target = int(self.task[1:]) % 4 if self.task[1:].isdigit() else 0
        action = f"go to room {target}" if self.opened else "open door"
        return {
            "task_id": self.task,
            "task_type": "corridor",
            "task": f"reach room {target}",
            "won": won,
            "admissible_actions": ["open door", "look"],
            "expert_action": None if won else action,
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.task, self.opened = (options or {}).get("task_id", "t0"), False
        return f"A corridor. Your task is to: {self._info()['task']}.", self._info()

    def step(self, action):
        if self.task == "t_hang":
            time.sleep(3600)
        if self.task == "t_crash":
            raise RuntimeError("engine crashed")
        if action == "open door":
            self.opened = True
            return "The door opens.", 0.0, False, False, self._info()
        won = self.opened and action == self._info()["expert_action"]
        return ("You made it." if won else "Nothing happens."), float(won), won, False, self._info(won)


if "Corridor-v0" not in registry:
    register(id="Corridor-v0", entry_point=Corridor)
