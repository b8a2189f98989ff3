"""What every policy is: a batched map from per-env contexts to decisions.

A policy owns its prompt (``begin``/``observe`` build the chat it will be judged on) and its choice
(``act``); it never steps environments. ``act`` is batched over all parallel envs so model calls share one
forward pass. Expert and random policies produce messages in the same format as the ReAct agent, so their
episodes are training data for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentrl.types import Candidate


@dataclass
class Context:
    """One env's episode as the policy sees it.

    Attributes:
        slot: index of the env in the rollout batch (keys per-env state such as a KV cache).
        messages: the chat so far, ending with the user turn that holds the latest observation.
        observation: the latest observation text.
        info: the env's latest ``info`` dict (``admissible_actions``, ``expert_action``, ``task`` ...).
        env_kind: "alfworld", "textworld" or "math" (selects prompt and action syntax).
    """

    slot: int
    messages: list[dict[str, str]]
    observation: str
    info: dict[str, Any]
    env_kind: str
    memory: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decision:
    """A policy's answer for one context.

    ``raw`` is the assistant message exactly as produced (recorded in ``messages``); ``action`` is what the
    env receives. ``valid`` is False when no action could be parsed (the raw text is sent instead).
    ``logprob`` is the policy's summed log-prob over its ``logprob_tokens`` tokens: of a chosen command (the command
    and the end of the turn) where the action space is constrained, of the whole generated turn for free text
    where the backend reports it (the transformers backend does, at temperature 1 whatever the sampling's); else
    None. ``label`` is the
    expert's action for the state when a DAgger policy records one.
    """

    action: str
    raw: str
    thought: str = ""
    valid: bool = True
    value: float | None = None
    candidates: list[Candidate] | None = None
    new_tokens: int = 0
    logprob: float | None = None
    logprob_tokens: int = 0
    label: str | None = None
    masked: list[str] | None = None  # admissible commands the anti-loop option excluded at this step


@runtime_checkable
class Policy(Protocol):
    """Maps observation + info to an action, for a batch of envs at once."""

    name: str

    def begin(self, slot: int, observation: str, info: dict[str, Any], env_kind: str) -> Context:
        """Starts an episode: builds the initial chat (system instruction, task, first observation)."""
        ...

    def act(self, contexts: list[Context]) -> list[Decision]:
        """Chooses one action per context (one batched model call for model-backed policies)."""
        ...

    def observe(self, context: Context, decision: Decision, observation: str, info: dict[str, Any]) -> None:
        """Appends the decision (assistant turn) and the env's answer (user turn) to the context."""
        ...

    def end(self, context: Context) -> None:
        """The episode is over: drop what was kept for it (a generator's KV cache, a critic's prefix)."""
        ...
