"""Generation with vLLM's offline engine (``vllm.LLM``) and automatic prefix caching (GPU only).

Thin by design: prompts are rendered with the model's own chat template and sent in one ``LLM.generate``
call; vLLM's prefix cache plays the role the carried KV cache plays in the transformers backend (each turn
of an episode shares the previous turn's prompt as a prefix), so ``release`` has nothing to do.

A request with ``choices`` uses vLLM's structured outputs (``SamplingParams(structured_outputs=
StructuredOutputsParams(choice=...))``, vLLM >= 0.12): the reply is one of the choices, decoded under vLLM's
grammar mask and ranked token by token (not by the whole choice's length-normalised score, as the transformers
backend and ``agentrl serve`` do), with its cumulative log-prob. A chat ending with an assistant message is
continued (the prompt ends with that message's content).
"""

from __future__ import annotations

from typing import Any

from agentrl.backends.base import Completion, Request, Sampling, render_chat
from agentrl.models import is_adapter, resolve_model

INSTALL_HINT = (
    'the vllm backend needs vLLM (CUDA only): pip install "agentrl[vllm]"; on CPU use --backend transformers, '
    "or run `vllm serve` elsewhere and use --backend openai --base-url URL"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return vllm


class VLLMBackend:
    """A :class:`~agentrl.backends.base.Generator` over ``vllm.LLM`` with ``enable_prefix_caching=True``.

    Args:
        model: a local checkpoint, hub name or ``default`` (LoRA adapters: merge them first).
        seed: engine seed (per-request seeds come from :class:`Sampling`).
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        **engine_kwargs: passed to ``vllm.LLM`` (e.g. ``dtype``, ``max_model_len``, ``tensor_parallel_size``).
    """

    def __init__(
        self, model: str, *, seed: int = 0, gpu_memory_utilization: float = 0.85, **engine_kwargs: Any
    ):

        vllm = _import_vllm()
        path = resolve_model(model)
        if is_adapter(path):
            raise ValueError(
                f"{path} is a LoRA adapter: merge it into its base model before using --backend vllm"
            )
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=path,
            enable_prefix_caching=True,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            **engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.generated_tokens = 0

    def _params(self, sampling: Sampling, choices: list[str] | None = None) -> Any:
        kwargs: dict[str, Any] = {
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "stop": list(sampling.stop) or None,
            "seed": sampling.seed,
        }
        if choices is not None:
            if sampling.n > 1:
                raise ValueError(
                    "the vllm backend draws choices, it cannot rank the top-n distinct ones: best-of-K over "
                    "admissible commands needs --backend transformers (or `agentrl serve` through --backend openai)"
                )
            from vllm.sampling_params import StructuredOutputsParams

            kwargs.update(stop=None, logprobs=0, structured_outputs=StructuredOutputsParams(choice=list(choices)))
        return self._vllm.SamplingParams(**kwargs)

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
        """All requests in one ``LLM.generate`` call; vLLM schedules and batches them."""
        if not requests:
            return []
        prompts = [render_chat(self.tokenizer, r.messages) for r in requests]
        params = [self._params(sampling, r.choices) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for out, request in zip(outputs, requests, strict=True):
            group = [
                Completion(
                    text=c.text,
                    num_tokens=len(c.token_ids),
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                    logprob=c.cumulative_logprob if request.choices is not None else None,
                )
                for c in out.outputs
            ]
            self.generated_tokens += sum(c.num_tokens for c in group)
            results.append(group)
        return results

    def release(self, cache_key: str) -> None:
        """Nothing to free: vLLM's prefix cache evicts by itself."""
