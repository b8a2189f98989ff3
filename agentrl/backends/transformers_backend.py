"""Batched generation with Hugging Face transformers, keeping each conversation's KV cache across turns.

One call to :meth:`TransformersBackend.generate` runs every pending prompt of every parallel env through one
batched prefill and one batched decoding loop (left padding, end-of-turn stop, temperature/top-p, ``n`` samples
per prompt). A request with a ``cache_key`` keeps its KV cache after the call; on the next turn of the same
conversation only the tokens after the longest common prefix with the cached tokens are fed to the model.
An agent's chat grows by one assistant turn and one observation per step, so with the cache carried the prefill
costs O(new observation) instead of O(whole history): the largest rollout speed-up available on CPU. A new
conversation starts from the longest prefix it shares with any cached one (the system prompt and example).

Batching conversations whose caches have different lengths: each row's cache is left-padded to the longest
cached prefix ``P``, the new tokens are left-padded to the longest new segment ``S``, so a row looks like
``[pad .. cached_i][pad .. new_i]`` with attention mask 0 on pads. Position ids come from the cumulative sum of
the mask, so every real token keeps the position it would have without padding (cached keys already carry
their rotary positions).

``n > 1`` samples of a prompt share its cache instead of copying it: the prompt is read once into one row, and
each decoding step feeds that row's ``n`` sampled tokens side by side (same position id) under a 4D mask that
lets sample ``j`` see the prompt and its own earlier tokens only. The cache grows by ``n`` columns a step rather
than holding ``n`` copies of the prompt, so best-of-K decoding costs far less than ``K`` greedy decodes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agentrl.backends.base import Completion, Request, Sampling


@dataclass
class _Entry:
    """A conversation's cached tokens and their keys/values (one ``[1, H, L, D]`` pair per layer)."""

    ids: list[int]
    kv: list[tuple[Any, Any]]


@dataclass
class GenerationStats:
    """Counters since construction (or :meth:`TransformersBackend.reset_stats`)."""

    calls: int = 0
    prompt_tokens: int = 0  # tokens of the full prompts
    prefill_tokens: int = 0  # tokens actually fed (prompt minus reused cache)
    generated_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _layer_kv(cache: Any) -> list[tuple[Any, Any]]:
    """Per-layer ``(keys, values)`` of a ``DynamicCache`` (``.layers`` in recent transformers, lists in older)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


class TransformersBackend:
    """A :class:`~agentrl.backends.base.Generator` over a transformers causal LM.

    Args:
        model: a causal LM (``AutoModelForCausalLM`` or a peft model) already on its device.
        tokenizer: its tokenizer, with a chat template.
        carry_cache: keep each ``Request.cache_key``'s KV cache between calls (False: re-read every prompt).
        max_batch: split a call into chunks of at most this many prompts (memory bound); None: one batch.
        keyless_cache: also keep the caches of this many recent requests that have no ``cache_key`` (a server
            whose clients send whole chats: the next turn finds its prefix among them); 0 keeps none.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        carry_cache: bool = True,
        max_batch: int | None = None,
        keyless_cache: int = 0,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.carry_cache = carry_cache
        self.max_batch = max_batch
        self.keyless_cache = keyless_cache
        self._keyless: deque[str] = deque()
        self._keyless_count = 0
        self.min_shared_prefix = 32  # tokens; shorter shared prefixes are not worth a separate forward
        self.stats = GenerationStats()
        self._cache: dict[str, _Entry] = {}
        self._released: _Entry | None = None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = self._stop_ids()

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        carry_cache: bool = True,
        **kwargs: Any,
    ) -> TransformersBackend:
        """Loads ``name`` (local folder, hub name, LoRA adapter folder or ``default``) with its tokenizer."""
        import torch

        from agentrl.models import load_causal_lm, load_tokenizer

        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            dtype
        )
        if torch_dtype is None:
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        model = load_causal_lm(name, dtype=torch_dtype, device=device, merge=True)
        return cls(model, load_tokenizer(name), carry_cache=carry_cache, **kwargs)

    # -- Generator protocol -------------------------------------------------------------------------

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
        """``sampling.n`` completions per request; all requests share one batched forward per token."""
        if not requests:
            return []
        chunk = self.max_batch or len(requests)
        out: list[list[Completion]] = []
        for start in range(0, len(requests), chunk):
            out.extend(self._generate_batch(requests[start : start + chunk], sampling))
        return out

    def release(self, cache_key: str) -> None:
        """Drops a conversation's KV cache (its episode ended); the last one released stays as a prefix donor."""
        entry = self._cache.pop(cache_key, None)
        if entry is not None:
            self._released = entry

    def _keyless_key(self) -> str | None:
        """A key for a request without one, evicting the oldest such entry beyond ``keyless_cache``."""
        if not self.keyless_cache:
            return None
        self._keyless_count += 1
        key = f"keyless/{self._keyless_count}"
        self._keyless.append(key)
        while len(self._keyless) > self.keyless_cache:
            self._cache.pop(self._keyless.popleft(), None)
        return key

    def _donors(self) -> list[_Entry]:
        return [*self._cache.values(), *([self._released] if self._released is not None else [])]

    def clear_cache(self) -> None:
        """Forgets every cached conversation and prefix donor."""
        self._cache.clear()
        self._keyless.clear()
        self._released = None

    def reset_stats(self) -> None:
        self.stats = GenerationStats()

    # -- internals ------------------------------------------------------------------------------------

    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in eos if isinstance(eos, list) else [eos]:
            if value is not None:
                ids.add(int(value))
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                ids.add(tid)
        return ids

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a chat rendered by the model's template, ending with the assistant header."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _device(self) -> Any:
        return next(self.model.parameters()).device

    def _generate_batch(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
        import torch
        from transformers import DynamicCache

        started = time.perf_counter()
        device = self._device()
        n = max(1, int(sampling.n))
        prompts = [self.encode(r.messages) for r in requests]

        if self.carry_cache:
            self._warm_shared_prefix(requests, prompts, device)

        # 1. How much of each prompt is already in that conversation's cache.
        reuse: list[int] = []
        entries: list[_Entry | None] = []
        for req, ids in zip(requests, prompts, strict=True):
            entry = self._cache.get(req.cache_key) if (self.carry_cache and req.cache_key) else None
            if entry is None and self.carry_cache:
                # A new conversation: borrow the longest shared prefix (system prompt, example) from any cached
                # one; equal tokens at equal positions have equal keys/values, so this is exact.
                entry = max(self._donors(), key=lambda e: common_prefix(e.ids, ids), default=None)
            keep = 0
            if entry is not None:
                # Keep at least one prompt token to feed: the model needs a last position to predict from.
                keep = min(common_prefix(entry.ids, ids), len(ids) - 1)
            entries.append(entry if keep > 0 else None)
            reuse.append(keep)
        batch = len(requests)
        past_len = max(reuse)
        new_len = max(len(ids) - k for ids, k in zip(prompts, reuse, strict=True))

        # 2. Rows [pad .. cached_i][pad .. new_i] with a mask that is 0 on pads.
        input_ids = torch.full((batch, past_len + new_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, past_len + new_len), dtype=torch.long)
        for i, (ids, k) in enumerate(zip(prompts, reuse, strict=True)):
            if k:
                input_ids[i, past_len - k : past_len] = torch.tensor(ids[:k])
                mask[i, past_len - k : past_len] = 1
            new = ids[k:]
            input_ids[i, past_len + new_len - len(new) :] = torch.tensor(new)
            mask[i, past_len + new_len - len(new) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        cache = DynamicCache()
        if past_len:
            for layer, (keys, values) in enumerate(self._stack_cache(entries, reuse, past_len, device)):
                cache.update(keys, values, layer)  # the portable way to fill a cache across versions
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids[:, past_len:],
                attention_mask=mask,
                position_ids=positions[:, past_len:],
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()
            if n > 1:  # sample r = i * n + j is sample j of prompt i; its row of the cache stays row i
                logits = logits.repeat_interleave(n, dim=0)
                # [B, 1, n, P + n * steps]: query j sees the prompt's real tokens and, of each fed step's block
                # of n columns, column j while sample j was alive (so no query's row is ever empty).
                samples_mask = mask.bool()[:, None, None, :].expand(batch, 1, n, mask.shape[1])
                own = torch.eye(n, dtype=torch.bool, device=device)
            rows = batch * n
            generator = None
            if sampling.temperature > 0 and sampling.seed is not None:
                generator = torch.Generator(device="cpu").manual_seed(int(sampling.seed))
            tokens: list[list[int]] = [[] for _ in range(rows)]
            done = torch.zeros(rows, dtype=torch.bool, device=device)
            stopped = [False] * rows
            texts: list[str | None] = [None] * rows
            last_pos = positions[:, -1]
            fed_ids: list[Any] = []
            for step in range(max(1, sampling.max_new_tokens)):
                next_ids = self._sample(logits, sampling, generator).to(device)
                next_ids = torch.where(done, torch.full_like(next_ids, self.pad_id), next_ids)
                alive = ~done
                picked = next_ids.tolist()  # one device sync per step, not one per row
                for r in torch.nonzero(alive).flatten().tolist():
                    tid = picked[r]
                    tokens[r].append(tid)
                    if tid in self.stop_ids:
                        stopped[r] = True
                        done[r] = True
                    elif sampling.stop:
                        text = self.tokenizer.decode(tokens[r], skip_special_tokens=True)
                        cut = min((text.find(s) for s in sampling.stop if s and s in text), default=-1)
                        if cut >= 0:
                            texts[r] = text[:cut]
                            stopped[r] = True
                            done[r] = True
                if bool(done.all()) or step == sampling.max_new_tokens - 1:
                    break
                # Feed the sampled tokens; rows already done feed a masked pad.
                last_pos = last_pos + 1
                if n == 1:
                    step_mask = alive.long()[:, None]
                    mask = torch.cat([mask, step_mask], dim=1)
                    fed_ids.append(next_ids[:, None])
                    step_ids, step_attention, step_positions = next_ids[:, None], mask, last_pos[:, None]
                else:
                    samples_mask = torch.cat([samples_mask, own & alive.view(batch, 1, 1, n)], dim=-1)
                    step_ids, step_attention = next_ids.view(batch, n), samples_mask
                    step_positions = last_pos[:, None].expand(batch, n)
                out = self.model(
                    input_ids=step_ids,
                    attention_mask=step_attention,
                    position_ids=step_positions,
                    past_key_values=cache,
                    use_cache=True,
                )
                cache = out.past_key_values
                logits = out.logits[:, -1, :].float() if n == 1 else out.logits.reshape(rows, -1).float()

        completions: list[list[Completion]] = []
        generated = 0
        for i in range(batch):
            group = []
            for r in range(i * n, (i + 1) * n):
                toks = tokens[r]
                text = texts[r]
                if text is None:
                    body = toks[:-1] if (stopped[r] and toks and toks[-1] in self.stop_ids) else toks
                    text = self.tokenizer.decode(body, skip_special_tokens=True)
                generated += len(toks)
                group.append(
                    Completion(
                        text=text, num_tokens=len(toks), finish_reason="stop" if stopped[r] else "length"
                    )
                )
            completions.append(group)

        if self.carry_cache:
            # n == 1: the prompt and the generated turn; n > 1: only the shared prompt (nothing was appended to
            # ``input_ids`` or ``mask``; the cache's sample columns after it are dropped).
            all_ids = torch.cat([input_ids, *fed_ids], dim=1) if fed_ids else input_ids
            width = all_ids.shape[1]
            for i, req in enumerate(requests):
                key = req.cache_key or self._keyless_key()
                if key is None:
                    continue
                keep = mask[i].bool()
                kv = [
                    (keys[i : i + 1, :, :width][:, :, keep], values[i : i + 1, :, :width][:, :, keep])
                    for keys, values in _layer_kv(cache)
                ]
                self._cache[key] = _Entry(ids=all_ids[i][keep].tolist(), kv=kv)

        self.stats.calls += 1
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        self.stats.prefill_tokens += sum(len(p) - k for p, k in zip(prompts, reuse, strict=True))
        self.stats.generated_tokens += generated
        self.stats.seconds += time.perf_counter() - started
        return completions

    def _warm_shared_prefix(self, requests: list[Request], prompts: list[list[int]], device: Any) -> None:
        """Several new conversations that start alike (the system prompt, the same task): read the prefix they
        all share once, and leave it as the donor the batch then borrows from (instead of E copies of it)."""
        import torch
        from transformers import DynamicCache

        new = [
            ids
            for r, ids in zip(requests, prompts, strict=True)
            if not (r.cache_key and r.cache_key in self._cache)
        ]
        if len(new) < 2:
            return
        shared = min(min(common_prefix(new[0], other) for other in new[1:]), len(new[0]) - 1)
        known = max((common_prefix(e.ids, new[0]) for e in self._donors()), default=0)
        if shared - known < self.min_shared_prefix:
            return
        ids = torch.tensor([new[0][:shared]], device=device)
        with torch.inference_mode():
            cache = self.model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True).past_key_values
        self._released = _Entry(ids=new[0][:shared], kv=_layer_kv(cache))
        self.stats.prefill_tokens += shared

    @staticmethod
    def _stack_cache(
        entries: list[_Entry | None], reuse: list[int], past_len: int, device: Any
    ) -> list[tuple]:
        """Left-pads each row's cached keys/values to ``past_len`` and stacks them into one batch."""
        import torch

        template = next(e for e in entries if e is not None)
        layers = []
        for layer, (k0, v0) in enumerate(template.kv):
            shape_k = (len(entries), k0.shape[1], past_len, k0.shape[3])
            shape_v = (len(entries), v0.shape[1], past_len, v0.shape[3])
            keys = torch.zeros(shape_k, dtype=k0.dtype, device=device)
            values = torch.zeros(shape_v, dtype=v0.dtype, device=device)
            for i, (entry, k) in enumerate(zip(entries, reuse, strict=True)):
                if entry is None or k == 0:
                    continue
                ek, ev = entry.kv[layer]
                keys[i, :, past_len - k :] = ek[0, :, :k]
                values[i, :, past_len - k :] = ev[0, :, :k]
            layers.append((keys, values))
        return layers

    @staticmethod
    def _sample(logits: Any, sampling: Sampling, generator: Any) -> Any:
        """Greedy when ``temperature == 0``; else temperature + nucleus (top-p) sampling."""
        import torch

        if sampling.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            drop = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        picks = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1)
        return picks
