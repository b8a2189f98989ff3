"""Generation through any OpenAI-compatible chat endpoint (``vllm serve``, ``agentrl serve``, hosted APIs).

Requests of one call are sent concurrently (a thread pool), each with a timeout and retries with backoff
(the ``openai`` client's own). The server is expected to do its own batching and prefix caching, so
``release`` has nothing to do here.

A request with ``choices`` (an admissible action space) goes out with vLLM's extra fields, which ``agentrl serve``
accepts too: ``structured_outputs: {"choice": [...]}``, ``continue_final_message: true`` (with
``add_generation_prompt: false``) when the chat ends with an assistant message to continue, ``logprobs: true``
(summed into :attr:`Completion.logprob`) and ``choice_score``. A server that ignores them answers free text: every
reply is checked to be one of the choices (and, for ``n > 1``, distinct), else :class:`GenerationError`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentrl.agent_format import AgentFormat
from agentrl.backends.base import Completion, Request, Sampling
from agentrl.errors import AgentRLError

_INSTALL_HINT = 'the openai backend needs the `openai` package: pip install "agentrl[openai]"'


class GenerationError(AgentRLError, RuntimeError):
    """The endpoint failed after all retries, or ignored a constraint; the message names it."""


def extra_fields(request: Request, sampling: Sampling) -> dict[str, Any]:
    """The extra body fields of a request (vLLM's names; ``agentrl serve`` reads the same): the choice
    constraint, and the continuation of a final assistant message."""
    fields: dict[str, Any] = {}
    if request.choices is not None:
        fields.update(structured_outputs={"choice": list(request.choices)}, choice_score=sampling.choice_score)
    if request.messages and request.messages[-1]["role"] == "assistant":
        fields.update(continue_final_message=True, add_generation_prompt=False)
    return fields


class OpenAIBackend:
    """A :class:`~agentrl.backends.base.Generator` over ``POST {base_url}/chat/completions``.

    Args:
        base_url: the endpoint, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server knows.
        api_key: defaults to ``$OPENAI_API_KEY`` (local servers accept any value).
        timeout: seconds per HTTP request.
        max_retries: retries per request (connection errors, 408/429/5xx), with exponential backoff.
        concurrency: requests in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        concurrency: int = 16,
    ):
        try:
            import openai
        except ImportError:  # pragma: no cover - openai is in the dev environment
            raise ImportError(_INSTALL_HINT) from None
        self.base_url = base_url
        self.model = model
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=max_retries,
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="agentrl-openai")
        self.generated_tokens = 0

    def _one(self, request: Request, sampling: Sampling) -> list[Completion]:
        import openai

        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "n": sampling.n,
        }
        if sampling.stop and request.choices is None:
            kwargs["stop"] = list(sampling.stop)[:4]  # the API takes at most 4 stop sequences
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        if request.choices is not None:
            kwargs["logprobs"] = True
        if extra := extra_fields(request, sampling):
            kwargs["extra_body"] = extra
        try:
            response = self.client.chat.completions.create(**kwargs)
        except openai.OpenAIError as err:
            raise GenerationError(f"{self.base_url}: {type(err).__name__}: {err}") from err
        choices = sorted(response.choices, key=lambda c: c.index)
        total = response.usage.completion_tokens if response.usage else 0
        # The API reports tokens for all choices together: share them out (exact when n == 1).
        share = [total // len(choices) + (i < total % len(choices)) for i in range(len(choices))]
        out = []
        for i, c in enumerate(choices):
            content = c.logprobs.content if c.logprobs is not None and c.logprobs.content else None
            out.append(
                Completion(
                    text=c.message.content or "",
                    num_tokens=len(content) if content else share[i],
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                    logprob=sum(t.logprob for t in content) if content else None,
                )
            )
        if request.choices is not None:
            self._check_choices(request.choices, out)
        return out

    def _check_choices(self, allowed: list[str], completions: list[Completion]) -> None:
        """A server that ignored the constraint must not pass for a constrained run."""
        for completion in completions:
            if completion.text not in allowed:
                raise GenerationError(
                    f"{self.base_url} ignored the choice constraint: it answered {completion.text[:80]!r}, not one "
                    f"of the {len(allowed)} choices. The server must honour vLLM's `structured_outputs` and "
                    "`continue_final_message` extra fields (vLLM >= 0.12, `agentrl serve`); or use "
                    "--action-space free"
                )
        if len({c.text for c in completions}) < len(completions):
            raise GenerationError(
                f"{self.base_url} repeated a choice among its n={len(completions)} answers: the top-n distinct "
                "choices (best-of-K over admissible commands) need `agentrl serve`; vLLM's guided choice samples"
            )

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
        """Sends every request at once (up to ``concurrency``); keeps the input order."""
        futures = [self._pool.submit(self._one, r, sampling) for r in requests]
        results = [f.result() for f in futures]
        self.generated_tokens += sum(c.num_tokens for group in results for c in group)
        return results

    def agent_format(self) -> Any:
        """The agent format the server lists for this model (``agentrl serve`` puts the model folder's
        ``agent_config.json`` in ``/v1/models``), or ``None`` when it lists none (vLLM, hosted APIs).

        Raises:
            AgentFormatError: the server lists a malformed one.
        """
        import openai


        try:
            models = list(self.client.models.list())
        except openai.OpenAIError:  # no /models route: the server has no format to offer
            return None
        for entry in models:
            data = (entry.model_extra or {}).get("agent_config")
            if entry.id == self.model and isinstance(data, dict):
                return AgentFormat.from_dict(data, where=f"{self.base_url}/models ({self.model})")
        return None

    def release(self, cache_key: str) -> None:
        """Nothing to free: the server manages its own (prefix) cache."""

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()
