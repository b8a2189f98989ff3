"""The random policy: uniform over ``info["admissible_actions"]`` (failure data for the learner)."""

from __future__ import annotations

import random as _random
import zlib
from typing import Any

from agentrl.policies.base import Context, Decision
from agentrl.policies.prompts import check_env_kind, initial_messages, record_turn, templated_turn


class RandomPolicy:
    """Picks an admissible action uniformly at random, with a per-episode seeded generator.

    The generator is seeded from ``seed`` and the episode id the rollout puts in ``context.memory``
    (``"episode_id"``), so an episode's actions do not depend on how many envs run in parallel.
    ``thoughts=False`` writes thought-free ``Action: ...`` turns.
    """

    name = "random"

    def __init__(self, seed: int = 0, example: bool = True, thoughts: bool = True):
        self.seed = seed
        self.example = example
        self.thoughts = thoughts
        self._episodes = 0

    def begin(self, slot: int, observation: str, info: dict[str, Any], env_kind: str) -> Context:
        check_env_kind(env_kind)
        messages = initial_messages(env_kind, observation, info, self.example, self.thoughts)
        self._episodes += 1
        return Context(slot=slot, messages=messages, observation=observation, info=info, env_kind=env_kind)

    def _rng(self, ctx: Context) -> _random.Random:
        if "rng" not in ctx.memory:
            name = str(ctx.memory.get("episode_id", f"{ctx.slot}/{self._episodes}"))
            ctx.memory["rng"] = _random.Random(zlib.crc32(f"{self.seed}/{name}".encode()))
        return ctx.memory["rng"]

    def act(self, contexts: list[Context]) -> list[Decision]:
        decisions = []
        for ctx in contexts:
            actions = list(ctx.info.get("admissible_actions") or [])
            if not actions:
                raise ValueError(
                    f"random policy: the {ctx.env_kind} env lists no admissible_actions "
                    f"(task {ctx.info.get('task_id')!r}); use --policy expert or react"
                )
            action = self._rng(ctx).choice(sorted(actions))
            decisions.append(templated_turn("I try an action at random.", action, ctx.env_kind, self.thoughts))
        return decisions

    def end(self, context: Context) -> None:
        """Nothing is kept per episode."""

    def observe(self, context: Context, decision: Decision, observation: str, info: dict[str, Any]) -> None:
        record_turn(context, decision, observation, info)
