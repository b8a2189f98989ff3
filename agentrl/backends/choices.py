"""Constrained completions for the transformers backend: the turn ends with one of ``Request.choices``.

Every choice of a request is scored in one prefix-shared pass on top of the conversation's carried KV cache:

1. the tokens that the prompt and all its choices share go through the backend's usual prefill (which reuses the
   cache, so an agent's step feeds only its new observation), giving the logits of each choice's first token;
2. every choice's own tail (its remaining tokens and the end-of-turn token) is packed side by side in the same
   row under a block-diagonal mask (:func:`agentrl.kv_cache.packed_tails`), one forward for all rows and choices.

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
    """The ``sampling.n`` best distinct choices of each request (best first), in one prefill and one tail pass.

    Args:
        backend: a ``TransformersBackend`` (its model, tokenizer, carried caches and stats are used).
        requests: chats with ``choices``; a chat ending with an assistant message is continued.
        sampling: ``n``, ``choice_score``, and ``temperature`` (0: the top ``n``; above 0: ``n`` drawn without
            replacement from ``softmax(score / temperature)``, seeded by ``seed``).
    """
    started = time.perf_counter()
    options = [distinct(list(r.choices or [])) for r in requests]
    prompts = [backend.encode(r.messages) for r in requests]
    heads, tails = [], []
    for request, prompt, opts in zip(requests, prompts, options, strict=True):
        text = backend.render(request.messages)
        full = [backend.tokens(text + option) + [backend.end_id] for option in opts]
        shared = min(common_prefix(prompt, ids) for ids in full)  # tokens may merge across the boundary
        if shared == 0:
            raise ValueError("a constrained request needs a non-empty prompt")
        heads.append(prompt[:shared])
        tails.append([ids[shared:] for ids in full])
    prefilled = backend._prefill(requests, heads)
    logprobs = _tail_logprobs(backend, prefilled, tails)
    if backend.carry_cache:  # the cache keeps the shared head; the chosen tail is re-fed with the next turn
        kv_cache.crop(prefilled.cache, prefilled.batch.mask.shape[1])
        batch = prefilled.batch
        backend._store(requests, kv_cache.row_prefixes(prefilled.cache, batch.input_ids, batch.mask))
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
        ]
        out.append(rank(scored, sampling, generator)[: max(1, int(sampling.n))])
    backend._count(heads, prefilled.reuse, sum(c.num_tokens for group in out for c in group), started)
    backend.stats.extra["choice_tokens"] = backend.stats.extra.get("choice_tokens", 0) + sum(
        len(t) for group in tails for t in group
    )
    return out


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


def _tail_logprobs(backend: Any, prefilled: Any, tails: list[list[list[int]]]) -> list[list[list[float]]]:
    """The log-prob of every token of every tail on top of its row's prefill: one packed forward for all."""
    import torch

    batch = prefilled.batch
    packed = kv_cache.packed_tails(batch.mask, tails, backend.pad_id)
    with torch.inference_mode():
        out, _ = kv_cache.forward(
            backend.model,
            prefilled.cache,
            input_ids=packed.input_ids,
            attention_mask=packed.mask,
            position_ids=packed.positions,
        )
        first = prefilled.logits.log_softmax(-1)  # [B, V]: each row's next token after the shared head
        result = []
        for r, (group, spans) in enumerate(zip(tails, packed.spans, strict=True)):
            row = out.logits[r].float().log_softmax(-1)  # [Q, V]
            ids = packed.input_ids[r]
            values = []
            for tail, (start, stop) in zip(group, spans, strict=True):
                rest = row[start : stop - 1].gather(1, ids[start + 1 : stop, None])[:, 0]
                values.append([float(first[r, tail[0]]), *rest.tolist()])
            result.append(values)
    return result
