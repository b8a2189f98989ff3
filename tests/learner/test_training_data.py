"""Trajectory files -> the learner's items: filters, SFT-only data refused, DPO pairs, the reference cache."""

from __future__ import annotations

import pytest
import torch

from agentrl.data import DataError
from agentrl.training_data import ReferenceCache, dpo_pairs, load_tokenized

from .helpers import episode, write_dataset


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_load_tokenized_filters_and_dpo_pairs(tokenizer, tmp_path):
    path = write_dataset(tmp_path / "d.jsonl", tasks=3)
    items, counts = load_tokenized(str(path), tokenizer)
    assert counts["kept"] == 6
    success, _ = load_tokenized([path], tokenizer, only_success=True)
    assert len(success) == 3 and all(e.success for e in success)
    short, counts = load_tokenized([path], tokenizer, max_length=10)
    assert not short and counts["too_long"] == 6
    pairs = dpo_pairs(items)
    assert len(pairs) == 3
    for chosen, rejected in pairs:
        assert items[chosen].success and not items[rejected].success
        assert items[chosen].task_id == items[rejected].task_id


def test_reference_cache_round_trip(tmp_path):
    cache = ReferenceCache(
        logps=[torch.tensor([-1.0, -2.0]), torch.tensor([-0.5])],
        topk_ids=[torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5, 6]])],
        topk_logps=[torch.tensor([[-0.1, -2.0], [-0.2, -3.0]]), torch.tensor([[-0.3, -1.0]])],
        fingerprint="abc",
    )
    cache.save(tmp_path / "c.safetensors")
    assert ReferenceCache.load(tmp_path / "c.safetensors", "other") is None
    back = ReferenceCache.load(tmp_path / "c.safetensors", "abc")
    assert back is not None
    assert all(torch.equal(a, b) for a, b in zip(back.logps, cache.logps, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(back.topk_ids, cache.topk_ids, strict=True))


def test_dagger_episodes_are_sft_data_only(tokenizer, tmp_path):
    """A DAgger episode's chat holds the expert's labels, its reward the executed actions': rewards are refused."""
    from agentrl.trajectory import TrajectoryWriter

    ep = episode(0, 0, True)
    ep.meta["dagger"] = {"beta": 0.5, "expert_steps": 1, "learner_steps": 1, "corrections": 1}
    with TrajectoryWriter(tmp_path / "dagger.jsonl") as writer:
        writer.write(ep)
    with pytest.raises(DataError, match=r"dagger.jsonl: episode 1 .* only SFT learns from it"):
        load_tokenized([tmp_path / "dagger.jsonl"], tokenizer)
    items, counts = load_tokenized([tmp_path / "dagger.jsonl"], tokenizer, allow_labels=True)
    assert counts["kept"] == 1 and items[0].success
