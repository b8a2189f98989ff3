"""A tiny in-process stand-in for ``agentrl.envs.workers.EnvPool`` (same API), for engine tests.

Task ``tK`` (K = 0..n-1): the agent must ``open door`` and then ``go to room R`` with R = K % 4. The expert
action, admissible actions, ``won`` and ``task_type`` are in ``info`` like the real envs. Task ids listed in
``fail`` raise on their first step (an ``EnvError``), those in ``hang`` report a timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class EnvError:
    slot: int
    message: str
    timed_out: bool = False


class FakeTask:
    def __init__(self, task_id: str):
        self.task_id = task_id
        self.target = int(task_id[1:]) % 4
        self.opened = False
        self.won = False

    def info(self) -> dict:
        expert = "open door" if not self.opened else f"go to room {self.target}"
        return {
            "task_id": self.task_id,
            "task_type": "even" if self.target % 2 == 0 else "odd",
            "task": f"reach room {self.target}",
            "admissible_actions": ["open door", *[f"go to room {r}" for r in range(4)], "look"],
            "won": self.won,
            "expert_action": None if self.won else expert,
        }

    def reset(self) -> tuple[str, dict]:
        return (
            f"You are in a hall with a closed door. Your task is to: reach room {self.target}.",
            self.info(),
        )

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if action == "open door":
            self.opened = True
            return "You open the door.", 0.0, False, False, self.info()
        if action.startswith("go to room") and self.opened:
            self.won = action == f"go to room {self.target}"
            return f"You arrive at {action[6:]}.", float(self.won), self.won, False, self.info()
        return "Nothing happens.", 0.0, False, False, self.info()


class FakePool:
    """EnvPool API over :class:`FakeTask` objects; ``delay`` seconds per step batch (to kill mid-run)."""

    def __init__(self, num_tasks: int = 8, num_envs: int = 2, *, fail=(), hang=(), delay: float = 0.0):
        self.task_ids = [f"t{k}" for k in range(num_tasks)]
        self.num_envs = num_envs
        self.fail, self.hang, self.delay = set(fail), set(hang), delay
        self.tasks: dict[int, FakeTask] = {}
        self.resets: list[tuple[int, dict]] = []
        self.closed = False

    def reset(self, requests: dict[int, dict]) -> dict:
        out = {}
        for slot, kwargs in requests.items():
            assert 0 <= slot < self.num_envs, slot
            self.resets.append((slot, kwargs))
            task = FakeTask(kwargs["options"]["task_id"])
            self.tasks[slot] = task
            out[slot] = task.reset()
        return out

    def step(self, actions: dict[int, str]) -> dict:
        if self.delay:
            time.sleep(self.delay)
        out = {}
        for slot, action in actions.items():
            task = self.tasks[slot]
            if task.task_id in self.fail:
                out[slot] = EnvError(slot, "engine crashed", False)
            elif task.task_id in self.hang:
                out[slot] = EnvError(slot, "step took longer than 1.0 s", True)
            else:
                out[slot] = task.step(action)
        return out

    def close(self) -> None:
        self.closed = True
