"""KV caches carried across calls: the one module that stitches them (generation backend and critic alike).

Two users share it: the transformers backend keeps each conversation's cache across turns and scores candidate
commands on top of it (``agentrl.backends.transformers_backend``), and the critic reads a chat once and every
candidate's tail on top of its cache (``agentrl.policies.scoring.CriticScorer``). Both do the same four things:

1. **Find reusable keys/values** -- :class:`PrefixStore` keeps a :class:`CachedPrefix` (token ids and per-layer
   keys/values ``[1, H, L, D]``) per conversation key; a new conversation borrows the longest prefix it shares with
   any cached one (the system prompt, the task). Equal tokens at equal positions have equal keys and values, so a
   borrowed prefix is exact.
2. **Batch rows whose caches differ in length** -- :func:`left_padded` lays row ``i`` out as
   ``[pad .. cached_i][pad .. new_i]`` with an attention mask that is 0 on pads and position ids from the mask's
   cumulative sum, so every real token keeps the position it would have without padding (cached keys already carry
   their rotary positions).
3. **Pack several continuations of one row** -- :func:`packed_tails` puts all candidate tails of a row side by
   side after its cache under a block-diagonal 4D mask (each tail sees the row's real cached tokens and its own
   earlier tokens only; positions restart where the cache ends), so every tail is computed exactly as if it were
   alone, without a copy of the cache per candidate.
4. **Keep the real columns** -- :func:`row_prefixes` cuts each row's pads out of a batched cache, and
   :func:`crop` drops trailing columns.

Version differences of transformers live here and nowhere else: ``DynamicCache.crop`` takes minus the number of
tokens to drop (since 5.24 a positive length raises; before, a positive value was the length to keep and a negative
one also meant "drop that many", so the negative form works in every 5.x), and 5.24 renamed the forward argument
and output field ``past_key_values`` to ``cache`` (:func:`forward`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class CachedPrefix:
    """Token ids and their keys/values: one ``(keys, values)`` pair of shape ``[1, H, len(ids), D]`` per layer."""

    ids: list[int]
    kv: list[tuple[Any, Any]]


@dataclass
class Padded:
    """A left-padded batch ``[pad .. cached_i][pad .. new_i]`` ready for one forward on top of ``cache``.

    Attributes:
        input_ids: ``[B, P + S]`` all tokens (cached ones too, for bookkeeping); feed ``input_ids[:, P:]``.
        mask: ``[B, P + S]`` 1 on real tokens, 0 on pads.
        positions: ``[B, P + S]`` position ids (``cumsum(mask) - 1``, clamped at 0).
        past_len: ``P``, the width of the stacked cache (the longest reused prefix).
        cache: a ``DynamicCache`` holding the stacked, left-padded prefixes (empty when ``P == 0``).
    """

    input_ids: Any
    mask: Any
    positions: Any
    past_len: int
    cache: Any


@dataclass
class Tails:
    """Candidate tails packed after each row's cache (see :func:`packed_tails`).

    Attributes:
        input_ids: ``[R, Q]`` tail tokens, right-aligned; pads before them.
        positions: ``[R, Q]`` each tail's positions restart at the row's number of cached real tokens.
        mask: ``[R, 1, Q, P + Q]`` bool: query ``q`` may attend to key ``k``.
        spans: ``spans[r][j] = (start, stop)``: tail ``j`` of row ``r`` occupies ``input_ids[r, start:stop]``.
    """

    input_ids: Any
    positions: Any
    mask: Any
    spans: list[list[tuple[int, int]]]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def layer_kv(cache: Any) -> list[tuple[Any, Any]]:
    """Per-layer ``(keys, values)`` of a ``DynamicCache`` (``.layers`` in transformers 5, lists before)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def build_cache(layers: Sequence[tuple[Any, Any]]) -> Any:
    """A ``DynamicCache`` holding ``layers`` (``(keys, values)`` per layer), filled the portable way."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
    return cache


def cache_length(cache: Any) -> int:
    """Columns held by every layer of ``cache`` (0 for an empty cache)."""
    kv = layer_kv(cache)
    return int(kv[0][0].shape[-2]) if kv and kv[0][0] is not None else 0


def crop(cache: Any, length: int) -> None:
    """Keeps the first ``length`` columns of every layer of a ``DynamicCache``, in place.

    transformers 5.24 made ``DynamicCache.crop`` take minus the number of tokens to drop (a positive argument
    raises); earlier versions read a positive argument as the length to keep and a negative one as the count to
    drop. Passing ``-(current - length)`` means the same in both; dropping nothing is skipped (``crop(0)`` kept
    zero columns in the old convention).

    Raises:
        ValueError: ``length`` is negative or longer than the cache.
    """
    current = cache_length(cache)
    if not 0 <= length <= current:
        raise ValueError(f"cannot crop a cache of {current} columns to {length}")
    if length < current:
        cache.crop(length - current)


@functools.cache
def _cache_kwarg(model_class: type) -> str:
    """``cache`` (transformers >= 5.24) or ``past_key_values`` (before): the forward argument that takes a cache."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def forward(model: Any, cache: Any, **inputs: Any) -> tuple[Any, Any]:
    """``model(**inputs)`` on top of ``cache`` with ``use_cache=True``; returns ``(output, updated cache)``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft forwards **kwargs
    out = model(**inputs, **{_cache_kwarg(type(base)): cache}, use_cache=True)
    updated = out["cache"] if "cache" in out else out["past_key_values"]
    return out, updated


class PrefixStore(dict[str, CachedPrefix]):
    """Cached prefixes by conversation key (a dict), plus the last released one as a donor for new conversations."""

    def __init__(self) -> None:
        super().__init__()
        self.released: CachedPrefix | None = None

    def release(self, key: str) -> None:
        """Drops a conversation (its episode ended); it stays available as the donor of the next new one."""
        prefix = self.pop(key, None)
        if prefix is not None:
            self.released = prefix

    def clear(self) -> None:
        super().clear()
        self.released = None

    def donors(self) -> list[CachedPrefix]:
        return [*self.values(), *([self.released] if self.released is not None else [])]

    def lookup(self, key: str | None, ids: Sequence[int]) -> tuple[CachedPrefix | None, int]:
        """The cache to continue ``ids`` from and how many of its tokens to reuse (``(None, 0)``: none).

        The conversation's own entry if it has one, else the donor sharing the longest prefix with ``ids``. At
        least one token of ``ids`` is left to feed: the model needs a last position to predict from.
        """
        prefix = self.get(key) if key else None
        if prefix is None:
            prefix = max(self.donors(), key=lambda p: common_prefix(p.ids, ids), default=None)
        keep = min(common_prefix(prefix.ids, ids), len(ids) - 1) if prefix is not None else 0
        return (prefix, keep) if keep > 0 else (None, 0)


def stack(pasts: Sequence[tuple[CachedPrefix | None, int]], width: int, device: Any) -> Any:
    """A ``DynamicCache`` of batch ``len(pasts)`` and ``width`` columns: row ``i`` holds the first ``keep_i``
    tokens of ``prefix_i`` right-aligned (zeros before them; the attention mask must be 0 there)."""
    import torch

    template = next(p for p, keep in pasts if p is not None and keep > 0)
    layers = []
    for layer, (k0, v0) in enumerate(template.kv):
        keys = torch.zeros((len(pasts), k0.shape[1], width, k0.shape[3]), dtype=k0.dtype, device=device)
        values = torch.zeros((len(pasts), v0.shape[1], width, v0.shape[3]), dtype=v0.dtype, device=device)
        for row, (prefix, keep) in enumerate(pasts):
            if prefix is not None and keep > 0:
                pk, pv = prefix.kv[layer]
                keys[row, :, width - keep :] = pk[0, :, :keep]
                values[row, :, width - keep :] = pv[0, :, :keep]
        layers.append((keys, values))
    return build_cache(layers)


def left_padded(
    pasts: Sequence[tuple[CachedPrefix | None, int]], new: Sequence[Sequence[int]], pad_id: int, device: Any
) -> Padded:
    """Rows ``[pad .. prefix_i.ids[:keep_i]][pad .. new_i]`` and the stacked cache of the reused prefixes.

    Args:
        pasts: per row, a cached prefix and how many of its tokens to reuse (``(None, 0)``: none).
        new: per row, the tokens to feed after the reused ones (at least one each).
        pad_id: the token id written on pads (masked, never attended to).
        device: where the tensors go.
    """
    import torch

    rows = len(new)
    past_len = max((keep for _, keep in pasts), default=0)
    new_len = max(len(n) for n in new)
    input_ids = torch.full((rows, past_len + new_len), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, past_len + new_len), dtype=torch.long)
    for row, ((prefix, keep), tokens) in enumerate(zip(pasts, new, strict=True)):
        if prefix is not None and keep:
            input_ids[row, past_len - keep : past_len] = torch.tensor(prefix.ids[:keep])
            mask[row, past_len - keep : past_len] = 1
        input_ids[row, past_len + new_len - len(tokens) :] = torch.tensor(list(tokens))
        mask[row, past_len + new_len - len(tokens) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = stack(pasts, past_len, device) if past_len else build_cache([])
    return Padded(input_ids=input_ids, mask=mask, positions=positions, past_len=past_len, cache=cache)


def packed_tails(past_mask: Any, tails: Sequence[Sequence[Sequence[int]]], pad_id: int) -> Tails:
    """All tails of row ``r`` side by side after its cached columns, each computed as if it were alone.

    Row ``r`` is ``[pad .. tail_r1 tail_r2 ...]`` (right-aligned). A tail's query sees the row's real cached
    columns (``past_mask[r]``) and the earlier tokens of its own tail (block-diagonal, causal); pad queries see
    themselves only (keeps them finite). Each tail's positions start at the row's number of real cached tokens.

    Args:
        past_mask: ``[R, P]`` 1/True where the cache holds a real token of row ``r``.
        tails: ``tails[r][j]``: the tokens of candidate ``j`` of row ``r`` (at least one each).
        pad_id: the token id written on pads.
    """
    import torch

    device = past_mask.device
    rows, plen = past_mask.shape
    qlen = max(sum(len(t) for t in group) for group in tails)
    ids = torch.full((rows, qlen), pad_id, dtype=torch.long)
    positions = torch.zeros((rows, qlen), dtype=torch.long)
    mask = torch.zeros((rows, 1, qlen, plen + qlen), dtype=torch.bool)
    seen = past_mask.bool().cpu()
    spans: list[list[tuple[int, int]]] = []
    for r, group in enumerate(tails):
        cached = int(seen[r].sum())
        start = qlen - sum(len(t) for t in group)
        for q in range(start):
            mask[r, 0, q, plen + q] = True
        spans.append([])
        for tail in group:
            stop = start + len(tail)
            ids[r, start:stop] = torch.tensor(list(tail))
            positions[r, start:stop] = torch.arange(cached, cached + len(tail))
            mask[r, 0, start:stop, :plen] = seen[r]
            mask[r, 0, start:stop, plen + start : plen + stop] = (
                torch.ones(len(tail), len(tail)).tril().bool()
            )
            spans[-1].append((start, stop))
            start = stop
    return Tails(input_ids=ids.to(device), positions=positions.to(device), mask=mask.to(device), spans=spans)


def row_prefixes(cache: Any, input_ids: Any, mask: Any) -> list[CachedPrefix]:
    """Each row's real tokens and their keys/values, pads cut out (the cache's first ``mask.shape[1]`` columns)."""
    width = mask.shape[1]
    kv = layer_kv(cache)
    out = []
    for row in range(mask.shape[0]):
        keep = mask[row].bool()
        layers = [
            (k[row : row + 1, :, :width][:, :, keep], v[row : row + 1, :, :width][:, :, keep]) for k, v in kv
        ]
        out.append(CachedPrefix(ids=input_ids[row][keep].tolist(), kv=layers))
    return out
