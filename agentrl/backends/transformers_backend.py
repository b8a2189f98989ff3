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

from agentrl import kv_cache
from agentrl.backends.base import Completion, Request, Sampling, render_chat
from agentrl.backends.choices import choose
from agentrl.kv_cache import CachedPrefix, PrefixStore, common_prefix
from agentrl.models import load_causal_lm, load_tokenizer

__all__ = ["END_OF_TURN_TOKENS", "GenerationStats", "TransformersBackend", "common_prefix", "end_of_turn_id"]

# Tokens that close an assistant turn in common chat templates (ChatML, Llama 3, Gemma, Phi).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that closes an assistant turn in the chat template (``<|im_end|>`` for ChatML), else EOS."""
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in vocab:
            return int(vocab[token])
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no end-of-turn or EOS token")
    return int(tokenizer.eos_token_id)


@dataclass
class GenerationStats:
    """Counters since construction (or :meth:`TransformersBackend.reset_stats`)."""

    calls: int = 0
    prompt_tokens: int = 0  # tokens of the full prompts
    prefill_tokens: int = 0  # tokens actually fed (prompt minus reused cache)
    generated_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class _Prefilled:
    """A batch after its prompts went through the model: the next-token logits and the cache to decode on."""

    batch: kv_cache.Padded
    logits: Any  # [B, V] at each row's last prompt token
    cache: Any
    reuse: list[int]  # prompt tokens per row taken from a carried cache


@dataclass
class _Decoded:
    """What a decoding loop produced, row ``r = i * n + j`` being sample ``j`` of prompt ``i``."""

    tokens: list[list[int]]
    logps: list[list[float]]  # log pi of each token under the model at temperature 1 (whatever the sampling)
    stopped: list[bool]
    texts: list[str | None]  # set where a stop string cut the text
    cache: Any
    mask: Any  # [B, P + S (+ fed steps when n == 1)]: the prompt rows' mask, with the fed tokens for n == 1
    fed: list[Any]  # [B, 1] token tensors fed after the prompt (n == 1)


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
        self._cache = PrefixStore()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = self._stop_ids()
        self.end_id = end_of_turn_id(tokenizer)  # what a constrained choice ends with

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
        out: list[list[Completion]] = [[] for _ in requests]
        for constrained in (False, True):  # free and constrained requests go to their own batches
            index = [i for i, r in enumerate(requests) if (r.choices is not None) == constrained]
            for start in range(0, len(index), chunk):
                part = index[start : start + chunk]
                batch = [requests[i] for i in part]
                results = (
                    choose(self, batch, sampling) if constrained else self._generate_batch(batch, sampling)
                )
                for i, completions in zip(part, results, strict=True):
                    out[i] = completions
        return out

    def release(self, cache_key: str) -> None:
        """Drops a conversation's KV cache (its episode ended); the last one released stays as a prefix donor."""
        self._cache.release(cache_key)

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

    def _donors(self) -> list[CachedPrefix]:
        return self._cache.donors()

    def clear_cache(self) -> None:
        """Forgets every cached conversation and prefix donor."""
        self._cache.clear()
        self._keyless.clear()

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
        for token in END_OF_TURN_TOKENS:
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                ids.add(tid)
        return ids

    def render(self, messages: list[dict[str, str]]) -> str:
        """A chat as the model's template writes it, ending where the assistant's next tokens go.

        A chat that ends with an assistant message is continued: the text is the chat before it with the
        assistant header, followed by that message's content (no end of turn).
        """
        return render_chat(self.tokenizer, messages)

    def tokens(self, text: str) -> list[int]:
        """Token ids of rendered text (the template already wrote its special tokens)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of :meth:`render`'s text: the chat, ending with the assistant header (or a turn to continue)."""
        return self.tokens(self.render(messages))

    def _device(self) -> Any:
        return next(self.model.parameters()).device

    def _generate_batch(self, requests: list[Request], sampling: Sampling) -> list[list[Completion]]:
        import torch

        started = time.perf_counter()
        prompts = [self.encode(r.messages) for r in requests]
        prefilled = self._prefill(requests, prompts)
        decoded = self._decode(prefilled, sampling)
        completions = self._completions(decoded, len(requests), max(1, int(sampling.n)))
        if self.carry_cache:
            # n == 1: the prompt and the generated turn; n > 1: only the shared prompt (the cache's sample columns
            # after it are dropped).
            all_ids = torch.cat([prefilled.batch.input_ids, *decoded.fed], dim=1)
            kv_cache.crop(decoded.cache, all_ids.shape[1])
            self._store(requests, kv_cache.row_prefixes(decoded.cache, all_ids, decoded.mask))
        generated = sum(len(t) for t in decoded.tokens)
        self._count(prompts, prefilled.reuse, generated, started)
        return completions

    def _prefill(self, requests: list[Request], prompts: list[list[int]]) -> _Prefilled:
        """Reads every prompt on top of the longest cached prefix it has: one batched forward."""
        import torch

        device = self._device()
        if self.carry_cache:
            self._warm_shared_prefix(requests, prompts, device)
        pasts = [
            self._cache.lookup(r.cache_key, ids) if self.carry_cache else (None, 0)
            for r, ids in zip(requests, prompts, strict=True)
        ]
        reuse = [keep for _, keep in pasts]
        batch = kv_cache.left_padded(
            pasts, [ids[k:] for ids, k in zip(prompts, reuse, strict=True)], self.pad_id, device
        )
        past = batch.past_len
        with torch.inference_mode():
            out, cache = kv_cache.forward(
                self.model,
                batch.cache,
                input_ids=batch.input_ids[:, past:],
                attention_mask=batch.mask,
                position_ids=batch.positions[:, past:],
                logits_to_keep=1,
            )
        return _Prefilled(batch=batch, logits=out.logits[:, -1, :].float(), cache=cache, reuse=reuse)

    def _decode(self, prefilled: _Prefilled, sampling: Sampling) -> _Decoded:
        """The decoding loop: one batched forward per new token until every row stopped or hit the cap.

        ``n > 1``: sample ``r = i * n + j`` is sample ``j`` of prompt ``i``; its row of the cache stays row ``i``.
        The ``n`` samples of a row are fed side by side under a ``[B, 1, n, P + n * steps]`` mask: query ``j``
        sees the prompt's real tokens and, of each fed step's block of ``n`` columns, column ``j`` while sample
        ``j`` was alive (so no query's row is ever empty).
        """
        import torch

        n = max(1, int(sampling.n))
        batch, mask, cache = prefilled.batch.input_ids.shape[0], prefilled.batch.mask, prefilled.cache
        device = mask.device
        logits = prefilled.logits.repeat_interleave(n, dim=0) if n > 1 else prefilled.logits
        if n > 1:
            samples_mask = mask.bool()[:, None, None, :].expand(batch, 1, n, mask.shape[1])
            own = torch.eye(n, dtype=torch.bool, device=device)
        generator = None
        if sampling.temperature > 0 and sampling.seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(int(sampling.seed))
        rows = batch * n
        out = _Decoded(
            tokens=[[] for _ in range(rows)],
            logps=[[] for _ in range(rows)],
            stopped=[False] * rows,
            texts=[None] * rows,
            cache=cache,
            mask=mask,
            fed=[],
        )
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        last_pos = prefilled.batch.positions[:, -1]
        for step in range(max(1, sampling.max_new_tokens)):
            next_ids = self._sample(logits, sampling, generator).to(device)
            next_ids = torch.where(done, torch.full_like(next_ids, self.pad_id), next_ids)
            alive = ~done
            logps = torch.log_softmax(logits.float(), dim=-1).gather(1, next_ids[:, None].to(logits.device))[:, 0]
            self._record(out, next_ids.tolist(), logps.tolist(), torch.nonzero(alive).flatten().tolist(),
                         sampling.stop)
            done = torch.tensor(out.stopped, device=device)
            if bool(done.all()) or step == sampling.max_new_tokens - 1:
                break
            # Feed the sampled tokens; rows already done feed a masked pad.
            last_pos = last_pos + 1
            if n == 1:
                out.mask = torch.cat([out.mask, alive.long()[:, None]], dim=1)
                out.fed.append(next_ids[:, None])
                step_ids, step_attention, step_positions = next_ids[:, None], out.mask, last_pos[:, None]
            else:
                samples_mask = torch.cat([samples_mask, own & alive.view(batch, 1, 1, n)], dim=-1)
                step_ids, step_attention = next_ids.view(batch, n), samples_mask
                step_positions = last_pos[:, None].expand(batch, n)
            with torch.inference_mode():
                result, out.cache = kv_cache.forward(
                    self.model,
                    out.cache,
                    input_ids=step_ids,
                    attention_mask=step_attention,
                    position_ids=step_positions,
                )
            logits = result.logits[:, -1, :].float() if n == 1 else result.logits.reshape(rows, -1).float()
        return out

    def _record(self, out: _Decoded, picked: list[int], logps: list[float], alive: list[int], stop: list[str]) -> None:
        """Appends each live row's new token and its log-prob; a row stops at an end-of-turn token or a stop
        string."""
        for r in alive:
            tid = picked[r]
            out.tokens[r].append(tid)
            out.logps[r].append(logps[r])
            if tid in self.stop_ids:
                out.stopped[r] = True
            elif stop:
                text = self.tokenizer.decode(out.tokens[r], skip_special_tokens=True)
                cut = min((text.find(s) for s in stop if s and s in text), default=-1)
                if cut >= 0:
                    out.texts[r] = text[:cut]
                    out.stopped[r] = True

    def _completions(self, decoded: _Decoded, batch: int, n: int) -> list[list[Completion]]:
        completions: list[list[Completion]] = []
        for i in range(batch):
            group = []
            for r in range(i * n, (i + 1) * n):
                toks, stopped, text = decoded.tokens[r], decoded.stopped[r], decoded.texts[r]
                if text is None:
                    body = toks[:-1] if (stopped and toks and toks[-1] in self.stop_ids) else toks
                    text = self.tokenizer.decode(body, skip_special_tokens=True)
                finish = "stop" if stopped else "length"
                logps = decoded.logps[r]
                group.append(Completion(text=text, num_tokens=len(toks), finish_reason=finish, logprob=sum(logps),
                                        token_logprobs=list(zip(toks, logps, strict=True))))
            completions.append(group)
        return completions

    def _store(self, requests: list[Request], prefixes: list[CachedPrefix]) -> None:
        """Keeps each conversation's cache (keyless requests too, when ``keyless_cache`` allows)."""
        for request, prefix in zip(requests, prefixes, strict=True):
            key = request.cache_key or self._keyless_key()
            if key is not None:
                self._cache[key] = prefix

    def _count(self, prompts: list[list[int]], reuse: list[int], generated: int, started: float) -> None:
        self.stats.calls += 1
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        self.stats.prefill_tokens += sum(len(p) - k for p, k in zip(prompts, reuse, strict=True))
        self.stats.generated_tokens += generated
        self.stats.seconds += time.perf_counter() - started

    def _warm_shared_prefix(self, requests: list[Request], prompts: list[list[int]], device: Any) -> None:
        """Several new conversations that start alike (the system prompt, the same task): read the prefix they
        all share once, and leave it as the donor the batch then borrows from (instead of E copies of it)."""
        import torch

        new = [
            ids
            for r, ids in zip(requests, prompts, strict=True)
            if not (r.cache_key and r.cache_key in self._cache)
        ]
        if len(new) < 2:
            return
        shared = min(min(common_prefix(new[0], other) for other in new[1:]), len(new[0]) - 1)
        known = max((common_prefix(p.ids, new[0]) for p in self._donors()), default=0)
        if shared - known < self.min_shared_prefix:
            return
        with torch.inference_mode():
            _, cache = kv_cache.forward(
                self.model,
                kv_cache.build_cache([]),
                input_ids=torch.tensor([new[0][:shared]], device=device),
                logits_to_keep=1,
            )
        self._cache.released = CachedPrefix(ids=new[0][:shared], kv=kv_cache.layer_kv(cache))
        self.stats.prefill_tokens += shared

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
