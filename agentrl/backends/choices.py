"""Constrained completions for the transformers backend: the turn ends with one of ``Request.choices``.

Every choice of a request is scored in one prefix-shared forward on top of the conversation's carried KV cache.
Row ``r`` of that forward holds, after the cached prefix the conversation already has:

1. the rest of the tokens that the prompt and all its choices share (an agent's new observation, or the few
   tokens after a thought that was just generated), read once (:func:`agentrl.kv_cache.packed_tails`'s shared
   segment); its last position predicts each choice's first token;
2. every choice's own tail (its remaining tokens and the end-of-turn token), packed as a token tree (choices that
   start alike share those tokens) under a tree-attention mask, so each is computed as if it were alone, without a
   copy of the cache per choice.

A choice's log-prob is then exact -- the sum of ``log p(token | chat, earlier tokens)`` over its tokens and the
end-of-turn token, the same numbers a separate full forward over the chat and that choice gives -- and the
choices are ranked by ``Sampling.choice_score`` (length-normalised mean by default, or the sum). The ``n`` best
distinct choices come back, so best-of-K gets the policy's top-K commands from the same pass. The alternative,
decoding through a token trie of the choices, needs one forward per token of the longest choice and ranks token by
token rather than by the whole choice; ``bench/action_space_speed.py`` measures both (``bench/RESULTS.md``).
"""

from __future__ import annotations

import time
from typing import Any

from agentrl import kv_cache
from agentrl.backends.base import Completion, Request, Sampling, choice_score
from agentrl.kv_cache import common_prefix


def distinct(choices: list[str]) -> list[str]:
    """The choices without repeats, first occurrence first (an empty list is refused)."""
    out = list(dict.fromkeys(choices))
    if not out:
        raise ValueError("a constrained request needs at least one choice")
    return out


def choose(backend: Any, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
    """The ``sampling.n`` best distinct choices of each request (best first), in one batched forward.

    Args:
        backend: a ``TransformersBackend`` (its model, tokenizer, carried caches and stats are used).
        requests: chats with ``choices``; a chat ending with an assistant message is continued.
        sampling: ``n``, ``choice_score``, and ``temperature`` (0: the top ``n``; above 0: ``n`` drawn without
            replacement from ``softmax(score / temperature)``, seeded by ``seed``).
    """
    started = time.perf_counter()
    device = backend._device()
    options = [distinct(list(r.choices or [])) for r in requests]
    heads, fulls = [], []
    for request, opts in zip(requests, options, strict=True):
        prompt, full = choice_tokens(backend, backend.render(request.messages), opts)
        shared = min(common_prefix(prompt, ids) for ids in full)  # tokens may merge across the boundary
        if shared == 0:
            raise ValueError("a constrained request needs a non-empty prompt")
        heads.append(prompt[:shared])
        fulls.append(full)
    pasts = [backend._cache.lookup(r.cache_key, head) if backend.carry_cache else (None, 0)
             for r, head in zip(requests, heads, strict=True)]  # fmt: skip
    reuse = [keep for _, keep in pasts]
    width = max(reuse)
    cache = kv_cache.stack(pasts, width, device) if width else kv_cache.build_cache([])
    past_mask = _past_mask(reuse, device)
    new = [head[keep:] for head, keep in zip(heads, reuse, strict=True)]  # what the cache lacks, read once
    tails = [[ids[len(head) :] for ids in full] for head, full in zip(heads, fulls, strict=True)]
    packed = kv_cache.packed_tails(past_mask, tails, backend.pad_id, shared=new)
    logprobs = _tail_logprobs(backend, cache, packed, tails)
    if backend.carry_cache and any(len(n) > STORE_AFTER for n in new):
        # keep the heads (the prompts) for the next turn; a head the cache lacked only a few tokens of (a thought
        # was just generated on it) is not worth the copy: the next turn finds all but those tokens anyway
        backend._store(requests, _head_prefixes(cache, past_mask, pasts, packed))
    out = _ranked(options, tails, logprobs, sampling)
    backend._count(heads, reuse, sum(c.num_tokens for group in out for c in group), started)
    backend.stats.extra["choice_tokens"] = backend.stats.extra.get("choice_tokens", 0) + sum(
        len(t) for group in tails for t in group
    )
    return out


STORE_AFTER = 8  # a head whose uncached part is at most this long is not stored again


def _head_prefixes(cache: Any, past_mask: Any, pasts: list[Any], packed: Any) -> list[Any]:
    """Each row's cached prefix followed by its shared segment (the prompt), tails cut out."""
    import torch

    ids = torch.cat([torch.zeros_like(past_mask, dtype=torch.long), packed.input_ids], dim=1)
    mask = torch.cat([past_mask, torch.zeros_like(packed.input_ids, dtype=torch.bool)], dim=1)
    width = past_mask.shape[1]
    for r, ((prefix, keep), (start, stop)) in enumerate(zip(pasts, packed.shared_spans, strict=True)):
        if keep:
            ids[r, width - keep : width] = torch.tensor(prefix.ids[:keep])
        mask[r, width + start : width + stop] = True
    return kv_cache.row_prefixes(cache, ids, mask)


def _past_mask(lengths: list[int], device: Any) -> Any:
    """``[R, max(lengths)]`` True on each row's right-aligned cached tokens (the layout of :func:`kv_cache.stack`)."""
    import torch

    width = max(lengths)
    mask = torch.zeros((len(lengths), width), dtype=torch.bool, device=device)
    for row, n in enumerate(lengths):
        mask[row, width - n :] = True
    return mask


def _ranked(
    options: list[list[str]], tails: list[list[list[int]]], logprobs: list[list[list[float]]], sampling: Sampling
) -> list[list[Completion]]:
    """Each request's choices as completions, best first, cut at ``sampling.n``."""
    generator = None
    if sampling.temperature > 0 and sampling.seed is not None:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(int(sampling.seed))
    out = []
    for opts, group, lps in zip(options, tails, logprobs, strict=True):
        scored = [
            Completion(text=o, num_tokens=len(t), finish_reason="stop", logprob=sum(lp),
                       token_logprobs=list(zip(t, lp, strict=True)))
            for o, t, lp in zip(opts, group, lps, strict=True)
        ]  # fmt: skip
        out.append(rank(scored, sampling, generator)[: max(1, int(sampling.n))])
    return out


def choice_tokens(backend: Any, text: str, options: list[str]) -> tuple[list[int], list[list[int]]]:
    """The prompt's tokens and ``tokens(text + option) + [end of turn]`` for every option.

    Tokenizing the whole chat once per option would cost more than the model on CPU (20 commands x a 2,000-token
    chat), so each option re-tokenizes only the text from the prompt's last added token (``<|im_start|>`` of the
    assistant header) on: a tokenizer splits added tokens out before anything else, so what precedes one never
    depends on what follows it. Checked per call: the prompt's own suffix must re-tokenize to the same ids, else
    every option is tokenized whole.
    """
    tokenizer = backend.tokenizer
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    cut = max((i for i, t in enumerate(ids) if t in added), default=0)
    start = offsets[cut][0] if cut else 0
    if cut and ids[:cut] + backend.tokens(text[start:]) != ids:
        cut, start = 0, 0
    suffixes = tokenizer([text[start:] + option for option in options], add_special_tokens=False)["input_ids"]
    return ids, [ids[:cut] + list(tail) + [backend.end_id] for tail in suffixes]


def rank(scored: list[Completion], sampling: Sampling, generator: Any = None) -> list[Completion]:
    """Choices best first: by score (ties: the earlier choice), or by ``score / T`` plus Gumbel noise when
    ``temperature > 0`` (a draw without replacement from ``softmax(score / T)``)."""
    import torch

    scores = torch.tensor([choice_score(c, sampling.choice_score) for c in scored], dtype=torch.float64)
    if sampling.temperature > 0:
        uniform = torch.rand(len(scored), generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
        scores = scores / sampling.temperature - torch.log(-torch.log(uniform))
    order = sorted(range(len(scored)), key=lambda j: (-float(scores[j]), j))
    return [scored[j] for j in order]


def _tail_logprobs(backend: Any, cache: Any, packed: Any, tails: list[list[list[int]]]) -> list[list[list[float]]]:
    """The log-prob of every token of every tail: one forward of the packed rows on top of the stacked cache.

    A tail's first token is predicted at the last position of its row's shared segment, token ``i`` at the
    tail's own position ``i - 1``.
    """
    import torch

    with torch.inference_mode():
        out, _ = kv_cache.forward(
            backend.model,
            cache,
            input_ids=packed.input_ids,
            attention_mask=packed.mask,
            position_ids=packed.positions,
        )
        result = []
        for r, (group, paths) in enumerate(zip(tails, packed.paths, strict=True)):
            row = out.logits[r].float().log_softmax(-1)  # [Q, V]
            last = packed.shared_spans[r][1] - 1
            values = []
            for tail, path in zip(group, paths, strict=True):
                before = [last, *path[:-1]]  # token i is predicted at the query of token i - 1
                values.append(row[before, list(tail)].tolist())
            result.append(values)
    return result
