"""A tiny text task with an exact expert plan, for testing controllers without ALFWorld or a model.

A corridor of ``length`` rooms: the agent starts in room 0 and must reach the last room and ``take key``.
The expert's remaining plan from room ``p`` is ``(length - 1 - p) + 1`` steps, so an oracle critic knows the
true cost-to-go of every candidate action.
"""

from __future__ import annotations

import random
from typing import Any

from agentrl.policies.base import Context, Decision

ACTIONS = ["go east", "go west", "look", "inventory", "take key"]


class Corridor:
    """Gymnasium-style (reset/step 5-tuple) corridor task; ``info`` carries the ALFWorld-like keys."""

    def __init__(self, length: int = 5, task_id: str = "corridor-0"):
        self.length = length
        self.task_id = task_id
        self.position = 0
        self.won = False

    def _info(self) -> dict[str, Any]:
        expert = "take key" if self.position == self.length - 1 else "go east"
        return {"task_id": self.task_id, "task_type": f"corridor{self.length}", "task": "take the key",
                "admissible_actions": list(ACTIONS), "won": self.won, "expert_action": expert,
                "position": self.position}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict[str, Any]]:
        self.position, self.won = 0, False
        return f"You are in room 0 of {self.length}. Your task is to: take the key.", self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if action == "go east" and self.position < self.length - 1:
            self.position += 1
            obs = f"You arrive at room {self.position}."
        elif action == "go west" and self.position > 0:
            self.position -= 1
            obs = f"You arrive at room {self.position}."
        elif action == "take key" and self.position == self.length - 1:
            self.won = True
            obs = "You take the key."
        else:
            obs = "Nothing happens."
        return obs, float(self.won), self.won, False, self._info()


def remaining_plan(context: Context, action: str) -> int:
    """Exact expert plan length after taking ``action`` in the context's state."""
    length = int(context.info["task_type"].removeprefix("corridor"))
    pos = context.info["position"]
    if action == "take key" and pos == length - 1:
        return 0
    if action == "go east":
        pos = min(length - 1, pos + 1)
    elif action == "go west":
        pos = max(0, pos - 1)
    return (length - 1 - pos) + 1


class NoisyExpert:
    """A sampling policy: the expert's action with probability ``p``, else a uniformly random admissible one.

    Works on any env whose ``info`` has ``expert_action`` (and ``admissible_actions``; the corridor's otherwise).
    """

    name = "noisy_expert"

    def __init__(self, p: float = 0.3, seed: int = 0):
        self.p = p
        self.rng = random.Random(seed)

    def begin(self, slot: int, observation: str, info: dict[str, Any], env_kind: str) -> Context:
        messages = [{"role": "system", "content": "Act."}, {"role": "user", "content": observation}]
        return Context(slot=slot, messages=messages, observation=observation, info=info, env_kind=env_kind)

    def act(self, contexts: list[Context]) -> list[Decision]:
        out = []
        for ctx in contexts:
            choices = sorted(ctx.info.get("admissible_actions") or ACTIONS)
            expert = ctx.info.get("expert_action")
            action = expert if expert and self.rng.random() < self.p else self.rng.choice(choices)
            out.append(Decision(action=action, raw=f"Think: go.\nAction: {action}", thought="go.", new_tokens=4))
        return out

    def observe(self, context: Context, decision: Decision, observation: str, info: dict[str, Any]) -> None:
        context.messages += [{"role": "assistant", "content": decision.raw}, {"role": "user", "content": observation}]
        context.observation, context.info = observation, info
        context.memory.setdefault("actions", []).append(decision.action)

    def end(self, context: Context) -> None:
        """Nothing is kept per episode."""


def run_episodes(policy: Any, envs: list[Corridor], max_steps: int) -> list[tuple[bool, int, list[Decision]]]:
    """Steps all envs in lock-step with one batched ``act`` per step; returns (won, steps, decisions) per env."""
    contexts, done, results = [], [], []
    for slot, env in enumerate(envs):
        obs, info = env.reset()
        contexts.append(policy.begin(slot, obs, info, "alfworld"))
        done.append(False)
        results.append([False, 0, []])
    for _ in range(max_steps):
        live = [i for i in range(len(envs)) if not done[i]]
        if not live:
            break
        for i, decision in zip(live, policy.act([contexts[i] for i in live]), strict=True):
            obs, _, terminated, truncated, info = envs[i].step(decision.action)
            policy.observe(contexts[i], decision, obs, info)
            results[i][1] += 1
            results[i][2].append(decision)
            if terminated or truncated:
                done[i] = True
                results[i][0] = info["won"]
    return [tuple(r) for r in results]


class CorridorPool:
    """The rollout engine's EnvPool API over :class:`Corridor` tasks of lengths 3, 4, 5 (three task types)."""

    def __init__(self, num_tasks: int = 6, num_envs: int = 2):
        self.tasks = {f"corridor-{i}": 3 + i % 3 for i in range(num_tasks)}
        self.task_ids = sorted(self.tasks)
        self.envs: dict[int, Corridor] = {}

    def reset(self, requests: dict[int, dict]) -> dict:
        out = {}
        for slot, request in requests.items():
            task = request["options"]["task_id"]
            self.envs[slot] = Corridor(self.tasks[task], task)
            out[slot] = self.envs[slot].reset()
        return out

    def step(self, actions: dict[int, str]) -> dict:
        return {slot: self.envs[slot].step(action) for slot, action in actions.items()}

    def close(self) -> None:
        self.envs.clear()
