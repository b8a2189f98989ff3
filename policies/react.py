"""The ReAct LLM agent: chat-templated prompts, batched generation, robust ``Think/Action`` parsing."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from agentrl.backends.base import Generator, Request, Sampling
from agentrl.policies.action_space import (
    admissible_commands,
    check_action_space,
    choose_admissible,
    note_outcome,
)
from agentrl.policies.base import Context, Decision
from agentrl.policies.prompts import (
    TURN_STOPS,
    check_env_kind,
    initial_messages,
    parse_react,
    record_turn,
    window,
)


class ReActPolicy:
    """Prompts a language model with the env's action syntax and parses ``Think: ... / Action: ...`` replies.

    All contexts passed to :meth:`act` go to the generator in one call (one batched forward per token). Each
    episode gets its own ``cache_key`` so a backend that can keeps the conversation's KV cache across turns.

    Args:
        generator: any :class:`~agentrl.backends.base.Generator` (transformers, openai, vllm).
        sampling: decoding parameters; for math a newline stop is added (one reasoning step per action).
        history: ``None`` sends the full chat; ``k`` sends system + task + the last ``k`` turns.
        example: include the in-context example in the system instruction.
        thoughts: ask for ``Think: ... / Action: ...`` turns; ``False``: thought-free ``Action: ...`` turns
            (the parser reads both).
        action_space: ``"free"`` (parse the command from free text) or ``"admissible"`` (the command is chosen
            among ``info["admissible_actions"]``; see :mod:`agentrl.policies.action_space`).
        anti_loop: admissible only: mask a command that changed nothing for the next ``anti_loop`` steps.
    """

    name = "react"

    def __init__(
        self,
        generator: Generator,
        sampling: Sampling | None = None,
        *,
        history: int | None = None,
        example: bool = True,
        thoughts: bool = True,
        action_space: str = "free",
        anti_loop: int = 0,
    ):
        if history is not None and history < 0:
            raise ValueError(f"history must be None (full) or >= 0 turns, got {history}")
        self.generator = generator
        self.sampling = sampling or Sampling()
        self.history = history
        self.example = example
        self.thoughts = thoughts
        self.action_space = check_action_space(action_space)
        if anti_loop < 0 or (anti_loop and action_space != "admissible"):
            raise ValueError(f"anti_loop masks admissible commands: needs action_space admissible and >= 0, got {anti_loop}")
        self.anti_loop = anti_loop
        self._keys = itertools.count()
        self._calls = itertools.count()

    def begin(self, slot: int, observation: str, info: dict[str, Any], env_kind: str) -> Context:
        check_env_kind(env_kind)
        if self.action_space == "admissible":
            admissible_commands(info, env_kind)  # fails at the first reset of an env that lists none
        ctx = Context(
            slot=slot,
            messages=initial_messages(env_kind, observation, info, self.example, self.thoughts),
            observation=observation,
            info=info,
            env_kind=env_kind,
        )
        ctx.memory["cache_key"] = f"slot{slot}/ep{next(self._keys)}"
        return ctx

    def _sampling(self, env_kind: str) -> Sampling:
        """The decoding for one generate call: the policy's parameters, the stops of ``env_kind`` (one line for
        math; for text games, where a model starts writing the environment's next turn itself, as the in-context
        example shows), and a seed that moves on with every call so that repeated samples of a task differ while
        a rerun of the same configuration draws the same numbers."""
        stops = ["\n"] if env_kind == "math" else list(TURN_STOPS)
        extra = [s for s in stops if s not in self.sampling.stop]
        calls = next(self._calls)
        seed = None if self.sampling.seed is None else self.sampling.seed * 1_000_003 + calls
        return dataclasses.replace(self.sampling, stop=[*self.sampling.stop, *extra], seed=seed)

    def act(self, contexts: list[Context]) -> list[Decision]:
        return [samples[0] for samples in self.sample(contexts, 1)]

    def sample(self, contexts: list[Context], n: int, seed_offset: int = 0) -> list[list[Decision]]:
        """``n`` parsed completions per context from one generate call per env kind (``Sampling.n = n``).

        Best-of-K samples its candidates here, so best-of-1 acts exactly like the policy itself.
        """
        out: list[list[Decision]] = [[] for _ in contexts]
        # One generate call per env kind (a rollout has one kind, so normally exactly one call).
        for kind in sorted({c.env_kind for c in contexts}):
            index = [i for i, c in enumerate(contexts) if c.env_kind == kind]
            sampling = dataclasses.replace(self._sampling(kind), n=n)
            if sampling.seed is not None and seed_offset:
                sampling = dataclasses.replace(sampling, seed=sampling.seed + seed_offset)
            if self.action_space == "admissible":
                group = [contexts[i] for i in index]
                chosen = choose_admissible(
                    self.generator, sampling, group, n, history=self.history, thoughts=self.thoughts,
                    anti_loop=self.anti_loop,
                )
                for i, decisions in zip(index, chosen, strict=True):
                    out[i] = decisions
                continue
            requests = [
                Request(
                    messages=window(contexts[i].messages, self.history),
                    cache_key=contexts[i].memory.get("cache_key"),
                )
                for i in index
            ]
            outputs = self.generator.generate(requests, sampling)
            for i, completions in zip(index, outputs, strict=True):
                for completion in completions:
                    thought, action, valid = parse_react(completion.text, kind)
                    out[i].append(
                        Decision(action=action, raw=completion.text, thought=thought, valid=valid,
                                 new_tokens=completion.num_tokens, logprob=completion.logprob,
                                 logprob_tokens=completion.num_tokens if completion.logprob is not None else 0)
                    )
        return out

    def observe(self, context: Context, decision: Decision, observation: str, info: dict[str, Any]) -> None:
        if self.anti_loop:
            note_outcome(context, decision.action, context.observation, observation)
        record_turn(context, decision, observation, info)

    def end(self, context: Context) -> None:
        """The episode is over: the backend may drop its cached state."""
        key = context.memory.get("cache_key")
        if key:
            self.generator.release(key)
