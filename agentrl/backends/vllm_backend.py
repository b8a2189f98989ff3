"""Generation with vLLM's offline engine (``vllm.LLM``) and automatic prefix caching (GPU only).

Thin by design: prompts are rendered with the model's own chat template and sent in one ``LLM.generate``
call; vLLM's prefix cache plays the role the carried KV cache plays in the transformers backend (each turn
of an episode shares the previous turn's prompt as a prefix), so ``release`` has nothing to do.
"""

from __future__ import annotations

from typing import Any

from agentrl.backends.base import Completion, Request, Sampling

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
        from agentrl.models import is_adapter, resolve_model

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

    def _params(self, sampling: Sampling) -> Any:
        return self._vllm.SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
        )

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
        """All requests in one ``LLM.generate`` call; vLLM schedules and batches them."""
        if not requests:
            return []
        prompts = [
            self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        outputs = self.llm.generate(prompts, self._params(sampling), use_tqdm=False)
        results = []
        for out in outputs:
            group = [
                Completion(
                    text=c.text,
                    num_tokens=len(c.token_ids),
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                )
                for c in out.outputs
            ]
            self.generated_tokens += sum(c.num_tokens for c in group)
            results.append(group)
        return results

    def release(self, cache_key: str) -> None:
        """Nothing to free: vLLM's prefix cache evicts by itself."""
