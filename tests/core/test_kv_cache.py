"""agentrl.kv_cache: crop on the installed transformers, padded batches and packed tails equal unpadded forwards."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers
from packaging.version import Version

from agentrl import kv_cache
from agentrl.kv_cache import CachedPrefix, PrefixStore


def _cache(columns: int):
    keys = torch.arange(2 * 3 * columns * 4, dtype=torch.float32).view(2, 3, columns, 4)
    return kv_cache.build_cache([(keys, -keys), (keys + 1, -keys - 1)])


def test_crop_keeps_the_first_columns_on_the_installed_transformers():
    cache = _cache(5)
    want = [(k[:, :, :3].clone(), v[:, :, :3].clone()) for k, v in kv_cache.layer_kv(cache)]
    kv_cache.crop(cache, 3)
    assert kv_cache.cache_length(cache) == 3
    for (k, v), (wk, wv) in zip(kv_cache.layer_kv(cache), want, strict=True):
        assert torch.equal(k, wk) and torch.equal(v, wv)
    kv_cache.crop(cache, 3)  # nothing to drop: unchanged (the old API's crop(0) would have emptied it)
    assert kv_cache.cache_length(cache) == 3
    kv_cache.crop(cache, 0)
    assert kv_cache.cache_length(cache) == 0
    with pytest.raises(ValueError, match="cannot crop a cache of 5 columns to 6"):
        kv_cache.crop(_cache(5), 6)


@pytest.mark.skipif(Version(transformers.__version__) < Version("5.24"), reason="the API changed in 5.24")
def test_the_raw_crop_api_takes_minus_the_tokens_to_drop():
    """Why :func:`kv_cache.crop` exists: since 5.24 a positive argument raises, a negative one drops tokens."""
    cache = _cache(5)
    with pytest.raises(ValueError):
        cache.crop(3)
    cache.crop(-2)
    assert kv_cache.cache_length(cache) == 3


def test_forward_uses_the_installed_versions_cache_argument(tiny_model):
    model, _ = tiny_model
    ids = torch.tensor([[5, 6, 7, 8]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated `past_key_values`
        out, cache = kv_cache.forward(model, kv_cache.build_cache([]), input_ids=ids)
    assert kv_cache.cache_length(cache) == 4 and out.logits.shape[:2] == (1, 4)


def _prefix(model, ids: list[int]) -> CachedPrefix:
    with torch.inference_mode():
        _, cache = kv_cache.forward(model, kv_cache.build_cache([]), input_ids=torch.tensor([ids]))
    return CachedPrefix(ids=list(ids), kv=kv_cache.layer_kv(cache))


def _logits_alone(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def test_left_padded_rows_on_cached_prefixes_equal_unpadded_forwards(tiny_model):
    """Rows reuse 6, 2 and 0 cached tokens; each row's new logits equal its whole sequence read alone."""
    model, _ = tiny_model
    seqs = [[11, 12, 13, 14, 15, 16, 17, 18, 19], [21, 22, 23, 24, 25, 26, 27], [31, 32, 33]]
    pasts = [(_prefix(model, seqs[0][:7]), 6), (_prefix(model, seqs[1][:2]), 2), (None, 0)]
    new = [s[k:] for s, (_, k) in zip(seqs, pasts, strict=True)]
    batch = kv_cache.left_padded(pasts, new, pad_id=0, device="cpu")
    assert batch.past_len == 6 and batch.input_ids.shape == (3, 6 + 5)
    with torch.inference_mode():
        out, cache = kv_cache.forward(
            model,
            batch.cache,
            input_ids=batch.input_ids[:, 6:],
            attention_mask=batch.mask,
            position_ids=batch.positions[:, 6:],
        )
    for r, (seq, tokens) in enumerate(zip(seqs, new, strict=True)):
        got = out.logits[r, -len(tokens) :].float()
        assert torch.allclose(got, _logits_alone(model, seq)[-len(tokens) :], atol=1e-4)
    rows = kv_cache.row_prefixes(cache, batch.input_ids, batch.mask)
    assert [row.ids for row in rows] == seqs
    alone = _prefix(model, seqs[1])
    assert torch.allclose(rows[1].kv[0][0], alone.kv[0][0], atol=1e-5)


def test_packed_tails_equal_each_tail_read_alone(tiny_model):
    """Two rows of different cached lengths, 3 and 1 tails: every tail's logits equal prefix + tail alone."""
    model, _ = tiny_model
    chats = [[11, 12, 13, 14, 15], [21, 22]]
    tails = [[[40, 41], [42], [43, 44, 45]], [[50, 51, 52]]]
    width = 5
    cache = kv_cache.stack([(_prefix(model, c), len(c)) for c in chats], width, "cpu")
    past_mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]], dtype=torch.bool)
    packed = kv_cache.packed_tails(past_mask, tails, pad_id=0)
    assert packed.spans == [[(0, 2), (2, 3), (3, 6)], [(3, 6)]]
    with torch.inference_mode():
        out, _ = kv_cache.forward(
            model,
            cache,
            input_ids=packed.input_ids,
            attention_mask=packed.mask,
            position_ids=packed.positions,
        )
    for r, (chat, group) in enumerate(zip(chats, tails, strict=True)):
        for tail, (start, stop) in zip(group, packed.spans[r], strict=True):
            want = _logits_alone(model, chat + tail)[len(chat) :]
            assert torch.allclose(out.logits[r, start:stop].float(), want, atol=1e-4)


def test_prefix_store_lookup_own_entry_then_longest_donor():
    store = PrefixStore()
    store["a"] = CachedPrefix(ids=[1, 2, 3, 4], kv=[])
    store["b"] = CachedPrefix(ids=[1, 2, 9], kv=[])
    assert store.lookup("a", [1, 2, 3, 4, 5]) == (store.get("a"), 4)
    assert store.lookup("a", [1, 2, 3, 4]) == (store.get("a"), 3)  # >= 1 token left to feed
    assert store.lookup("new", [1, 2, 9, 9]) == (store.get("b"), 3)  # the longest shared prefix
    assert store.lookup("new", [7, 8]) == (None, 0)
    store.release("a")
    assert "a" not in store and len(store) == 1
    assert store.lookup("c", [1, 2, 3, 7])[1] == 3  # the released entry stays a donor
    store.clear()
    assert store.donors() == [] and store.lookup("c", [1, 2, 3]) == (None, 0)
