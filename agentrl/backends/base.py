"""The generation Protocol shared by the transformers, vLLM and OpenAI-compatible backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class Sampling:
    """Decoding parameters; ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Request:
    """One chat to continue with a new assistant turn.

    ``cache_key`` names the conversation (e.g. one per env slot and episode): a backend that can keeps its
    KV cache between calls and feeds only the tokens that are new since the last call.
    """

    messages: list[dict[str, str]]
    cache_key: str | None = None


@dataclass
class Completion:
    """One generated assistant turn."""

    text: str
    num_tokens: int
    finish_reason: str = "stop"  # "stop" or "length"


@runtime_checkable
class Generator(Protocol):
    """Generates ``sampling.n`` completions for each request, batched across requests."""

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]: ...

    def release(self, cache_key: str) -> None:
        """Forgets a conversation's cached state (its episode ended)."""
        ...
