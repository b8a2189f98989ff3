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


FUSE_LIMIT = 8  # uncached head tokens per row that ride along in every tail instead of a separate prefill


def choose(backend: Any, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
    """The ``sampling.n`` best distinct choices of each request (best first), in at most two batched forwards.

    Args:
        backend: a ``TransformersBackend`` (its model, tokenizer, carried caches and stats are used).
        requests: chats with ``choices``; a chat ending with an assistant message is continued.
        sampling: ``n``, ``choice_score``, and ``temperature`` (0: the top ``n``; above 0: ``n`` drawn without
            replacement from ``softmax(score / temperature)``, seeded by ``seed``).
    """
    started = time.perf_counter()
    options = [distinct(list(r.choices or [])) for r in requests]
    prompts, fulls, shared = [], [], []
    for request, opts in zip(requests, options, strict=True):
        prompt, full = choice_tokens(backend, backend.render(request.messages), opts)
        prompts.append(prompt)
        fulls.append(full)
        shared.append(min(common_prefix(prompt, ids) for ids in full))  # tokens may merge across the boundary
        if shared[-1] == 0:
            raise ValueError("a constrained request needs a non-empty prompt")
    heads = [prompt[:n] for prompt, n in zip(prompts, shared, strict=True)]
    pasts = [backend._cache.lookup(r.cache_key, head) if backend.carry_cache else (None, 0)
             for r, head in zip(requests, heads, strict=True)]  # fmt: skip
    if all(0 < len(head) - keep <= FUSE_LIMIT for head, (_, keep) in zip(heads, pasts, strict=True)):
        # The heads are cached but for a few tokens (a thought was just generated on this conversation): those
        # tokens ride along in every tail, and one packed forward on the stacked cache scores everything.
        reuse = [keep for _, keep in pasts]
        cache = kv_cache.stack(pasts, max(reuse), backend._device())
        tails = [[ids[keep:] for ids in full] for full, keep in zip(fulls, reuse, strict=True)]
        skips = [n - keep for n, keep in zip(shared, reuse, strict=True)]
        logprobs = _tail_logprobs(backend, cache, _past_mask(reuse, backend._device()), tails, skips)
        backend.stats.extra["fused_choice_calls"] = backend.stats.extra.get("fused_choice_calls", 0) + 1
    else:
        prefilled = backend._prefill(requests, heads)
        reuse = prefilled.reuse
        tails = [[ids[n:] for ids in full] for full, n in zip(fulls, shared, strict=True)]
        skips = [0] * len(requests)
        logprobs = _tail_logprobs(backend, prefilled.cache, prefilled.batch.mask, tails, skips, prefilled.logits)
        if backend.carry_cache:  # the cache keeps the shared head; the chosen tail is re-fed with the next turn
            kv_cache.crop(prefilled.cache, prefilled.batch.mask.shape[1])
            batch = prefilled.batch
            backend._store(requests, kv_cache.row_prefixes(prefilled.cache, batch.input_ids, batch.mask))
    out = _ranked(options, tails, skips, logprobs, sampling)
    backend._count(heads, reuse, sum(c.num_tokens for group in out for c in group), started)
    backend.stats.extra["choice_tokens"] = backend.stats.extra.get("choice_tokens", 0) + sum(
        len(t) for group in tails for t in group
    )
    return out


def _past_mask(lengths: list[int], device: Any) -> Any:
    """``[R, max(lengths)]`` True on each row's right-aligned cached tokens (the layout of :func:`kv_cache.stack`)."""
    import torch

    width = max(lengths)
    mask = torch.zeros((len(lengths), width), dtype=torch.bool, device=device)
    for row, n in enumerate(lengths):
        mask[row, width - n :] = True
    return mask


def _ranked(
    options: list[list[str]], tails: list[list[list[int]]], skips: list[int], logprobs: list[list[list[float]]],
    sampling: Sampling,
) -> list[list[Completion]]:
    """Each request's choices as completions (scored tokens only), best first, cut at ``sampling.n``."""
    generator = None
    if sampling.temperature > 0 and sampling.seed is not None:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(int(sampling.seed))
    out = []
    for opts, group, skip, lps in zip(options, tails, skips, logprobs, strict=True):
        scored = [
            Completion(text=o, num_tokens=len(t) - skip, finish_reason="stop", logprob=sum(lp),
                       token_logprobs=list(zip(t[skip:], lp, strict=True)))
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


def _tail_logprobs(
    backend: Any, cache: Any, past_mask: Any, tails: list[list[list[int]]], skips: list[int], first: Any = None
) -> list[list[list[float]]]:
    """Log-probs of every tail's scored tokens on top of its row's cache: one packed forward for all of them.

    Row ``r``'s tails score their tokens from index ``skips[r]`` on (the tokens before it are shared by every
    tail of the row, so they rank nothing). With ``skips[r] == 0`` the first token's logits come from ``first``
    (``[R, V]``, the prefill's last position); else from the tail's own previous position.
    """
    import torch

    packed = kv_cache.packed_tails(past_mask, tails, backend.pad_id)
    with torch.inference_mode():
        out, _ = kv_cache.forward(
            backend.model,
            cache,
            input_ids=packed.input_ids,
            attention_mask=packed.mask,
            position_ids=packed.positions,
        )
        head = first.log_softmax(-1) if first is not None else None  # [R, V]
        result = []
        for r, (group, spans, skip) in enumerate(zip(tails, packed.spans, skips, strict=True)):
            row = out.logits[r].float().log_softmax(-1)  # [Q, V]
            ids = packed.input_ids[r]
            values = []
            for tail, (start, stop) in zip(group, spans, strict=True):
                begin = start + max(skip, 1)  # token i of the tail is predicted at position i - 1
                rest = row[begin - 1 : stop - 1].gather(1, ids[begin:stop, None])[:, 0].tolist()
                values.append(([float(head[r, tail[0]])] if skip == 0 else []) + rest)
            result.append(values)
    return result
