"""The vLLM backend: install hint without vLLM; a real generation where vLLM and a GPU exist."""

from __future__ import annotations

import importlib.util

import pytest

from agentrl.backends.base import Request, Sampling

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_missing_vllm_gives_the_install_hint():
    from agentrl.backends.vllm_backend import VLLMBackend

    with pytest.raises(ImportError, match=r"agentrl\[vllm\]"):
        VLLMBackend("default")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM")
def test_vllm_generates_batched_with_prefix_caching(tiny_model_dir):  # pragma: no cover - GPU machines only
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from agentrl.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(str(tiny_model_dir), gpu_memory_utilization=0.3, enforce_eager=True)
    requests = [Request(messages=[{"role": "user", "content": text}]) for text in ("Hi", "Question: 3 + 5?")]
    out = backend.generate(requests, Sampling(max_new_tokens=5, n=2, temperature=1.0, seed=0))
    assert [len(g) for g in out] == [2, 2]
    assert all(c.num_tokens <= 5 for g in out for c in g)
