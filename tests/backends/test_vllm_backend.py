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


class _FakeVLLM:
    """Stands in for the `vllm` package: records what the backend passes to vLLM's documented API."""

    def __init__(self, tokenizer):
        import types

        fake = self

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class StructuredOutputsParams:
            def __init__(self, choice=None):
                self.choice = choice

        class LLM:
            def __init__(self, **kwargs):
                fake.engine = kwargs

            def get_tokenizer(self):
                return tokenizer

            def generate(self, prompts, params, use_tqdm=False):
                fake.calls.append((prompts, params))
                out = types.SimpleNamespace(text="look", token_ids=[1, 2], finish_reason="stop", cumulative_logprob=-0.5)
                return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

        self.calls: list = []
        self.module = types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)
        self.sampling_params = types.SimpleNamespace(StructuredOutputsParams=StructuredOutputsParams)


def test_choices_map_to_vllm_structured_outputs(monkeypatch, tiny_model_dir, tiny_model):
    """Without vLLM: the backend's calls follow vLLM's documented API (structured_outputs choice, continuation)."""
    import sys

    from agentrl.backends import vllm_backend

    _, tokenizer = tiny_model
    fake = _FakeVLLM(tokenizer)
    monkeypatch.setattr(vllm_backend, "_import_vllm", lambda: fake.module)
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", fake.sampling_params)
    backend = vllm_backend.VLLMBackend(str(tiny_model_dir))
    assert fake.engine["enable_prefix_caching"] is True
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Think: hm.\nAction: "}]
    free = Request(messages=chat[:1])
    out = backend.generate([free, Request(messages=chat, choices=["look", "inventory"])], Sampling(stop=["\n"]))
    prompts, params = fake.calls[-1]
    plain = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert prompts == [plain, plain + "Think: hm.\nAction: "]  # the final assistant message is continued
    assert params[0].kwargs["stop"] == ["\n"] and "structured_outputs" not in params[0].kwargs
    assert params[1].kwargs["structured_outputs"].choice == ["look", "inventory"] and params[1].kwargs["stop"] is None
    assert out[1][0].logprob == -0.5 and out[0][0].logprob is None
    with pytest.raises(ValueError, match="best-of-K over admissible commands needs --backend transformers"):
        backend.generate([Request(messages=chat, choices=["look"])], Sampling(n=2))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM")
def test_vllm_constrained_choice_is_one_of_the_choices(tiny_model_dir):  # pragma: no cover - GPU machines only
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from agentrl.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(str(tiny_model_dir), gpu_memory_utilization=0.3, enforce_eager=True)
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Action: "}]
    ((choice,),) = backend.generate([Request(messages=chat, choices=["look", "inventory"])], Sampling())
    assert choice.text in ("look", "inventory") and choice.logprob is not None
