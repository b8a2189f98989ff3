"""The generation Protocol shared by the transformers, vLLM and OpenAI-compatible backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

CHOICE_SCORES = ("mean", "sum")


@dataclass
class Sampling:
    """Decoding parameters; ``temperature == 0`` means greedy.

    ``choice_score`` ranks a request's ``choices`` (see :class:`Request`): ``"mean"`` is the length-normalised
    log-prob (the mean over the choice's tokens and the end-of-turn token), ``"sum"`` the summed log-prob. The
    sum favours short commands (every token costs probability); on the project's ALFWorld agents the mean doubled
    expert-action accuracy (``/work/shared/FACTS.md``), so it is the default.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    choice_score: str = "mean"

    def __post_init__(self) -> None:
        if self.choice_score not in CHOICE_SCORES:
            raise ValueError(
                f"choice_score must be one of {', '.join(CHOICE_SCORES)}, got {self.choice_score!r}"
            )


@dataclass
class Request:
    """One chat to continue with a new assistant turn.

    ``cache_key`` names the conversation (e.g. one per env slot and episode): a backend that can keeps its
    KV cache between calls and feeds only the tokens that are new since the last call.

    A chat whose last message is an assistant message is continued: the completion is the text that follows
    that message's content in the same turn (e.g. after a generated thought and ``"Action: "``).

    ``choices`` constrains the completion to exactly one of these strings, followed by the end of the turn
    (an admissible action space). The backend returns the ``n`` best distinct choices, best first, ranked by
    ``Sampling.choice_score`` (with ``temperature > 0``: drawn without replacement from ``softmax(score / T)``),
    each with its summed log-prob in :attr:`Completion.logprob`.
    """

    messages: list[dict[str, str]]
    cache_key: str | None = None
    choices: list[str] | None = None


@dataclass
class Completion:
    """One generated assistant turn."""

    text: str
    num_tokens: int
    finish_reason: str = "stop"  # "stop" or "length"
    logprob: float | None = None  # summed log-prob of the completion's tokens, where the backend reports it
    token_logprobs: list[tuple[int, float]] | None = None  # (token id, log-prob) of each, where known


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """A chat as ``tokenizer``'s template writes it, ending where the assistant's next tokens go.

    A chat that ends with an assistant message is continued: the text is the chat before it with the assistant
    header, then that message's content with no end of turn (what vLLM calls ``continue_final_message``).
    """
    head = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
    text = tokenizer.apply_chat_template(head, tokenize=False, add_generation_prompt=True)
    return text + messages[-1]["content"] if head is not messages else text


def choice_score(completion: Completion, how: str) -> float:
    """The score a choice is ranked by: summed log-prob (``"sum"``) or its mean per token (``"mean"``)."""
    if completion.logprob is None:
        raise ValueError("this completion carries no log-prob to rank it by")
    return completion.logprob if how == "sum" else completion.logprob / max(1, completion.num_tokens)


@runtime_checkable
class Generator(Protocol):
    """Generates ``sampling.n`` completions for each request, batched across requests."""

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]: ...

    def release(self, cache_key: str) -> None:
        """Forgets a conversation's cached state (its episode ended)."""
        ...
