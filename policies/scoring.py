"""Scoring candidate actions: the :class:`ActionScorer` Protocol, the learned critic and an oracle.

The critic convention (shared with ``agentrl.critic`` and the learner): a candidate turn is scored by
``V`` of its afterstate, the end-of-turn token of ``context.messages + [assistant: candidate.raw]`` rendered
through the tokenizer's chat template. :func:`agentrl.data.encode_after_action` defines that position once,
for the learner (which trains the critic there) and for every reader of the critic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentrl.backends.transformers_backend import common_prefix
from agentrl.data import encode_after_action
from agentrl.models import ModelError
from agentrl.policies.base import Context, Decision


@runtime_checkable
class ActionScorer(Protocol):
    """Scores candidate decisions: ``score(contexts, candidates)[i][j]`` is V(contexts[i] + candidates[i][j])."""

    def score(
        self, contexts: Sequence[Context], candidates: Sequence[Sequence[Decision]]
    ) -> list[list[float]]: ...


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that closes an assistant turn in the chat template (``<|im_end|>`` for ChatML), else EOS."""
    vocab = tokenizer.get_vocab()
    for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        if token in vocab:
            return int(vocab[token])
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no end-of-turn or EOS token to score candidates at")
    return int(tokenizer.eos_token_id)


def check_trained_at_afterstates(model: Any, path: str | Path) -> None:
    """Refuses a critic that the learner did not train at afterstates, where search reads it.

    Raises:
        ModelError: ``value_model.json`` does not record ``trained_at.afterstates`` (a critic trained with
            ``--no-afterstates``, by an older agentrl, or never trained).
    """
    trained = getattr(model, "trained_at", None) or {}
    if not trained.get("afterstates"):
        raise ModelError(
            f"{path}: this critic was not trained at afterstates (value_model.json `trained_at`: {trained or None}); "
            "best-of-K, beam search and the critic report read V after each action, where it would be an "
            "untrained extrapolation. Retrain it with `agentrl learn --algo oreo` (afterstates are on by default)"
        )


class CriticScorer:
    """:class:`ActionScorer` backed by a learned value model (``agentrl.critic.ValueModel``).

    Each (context, candidate) pair is rendered through the chat template with the candidate as the final
    assistant message; the value is read at the last end-of-turn token, i.e. right after the candidate.

    With a ``ValueModel`` (it has ``backbone`` and ``value_head``) scoring is prefix-shared: the K candidates
    of a context share its chat, so the chat goes through the backbone once (one batched forward over all
    contexts), then the candidates' own tokens go through a second batched forward on top of the chat's KV
    cache, all K tails of a context packed in one row under a block-diagonal attention mask (no per-candidate
    copy of the cache). So scoring costs two forwards per step whatever E and K are. With ``carry_cache`` the chat's KV cache is also kept per conversation
    (``context.memory["cache_key"]``), so the next step feeds only the turn and observation that are new --
    without it the critic would re-read the whole history K times per step, the dominant cost on CPU.
    Other models (anything with ``values(input_ids, attention_mask)``) get one right-padded batch.

    Args:
        model: a ``ValueModel``, or anything with ``values(input_ids [B, L], attention_mask [B, L]) -> [B, L]``.
        tokenizer: the policy's tokenizer (with a chat template).
        max_batch: plain path only: at most this many sequences per forward; None: one forward for all.
        max_length: plain path only: keep the last ``max_length`` tokens of a sequence.
        carry_cache: keep each conversation's chat KV cache between steps (prefix-shared path).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int | None = None,
        max_length: int | None = None,
        carry_cache: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_length = max_length
        self.carry_cache = carry_cache
        self.end_id = end_of_turn_id(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        self.shared = hasattr(model, "backbone") and hasattr(model, "value_head") and max_length is None
        self.forwards = 0  # critic forward passes so far (the bench and tests read it)
        self.fed_tokens = 0  # tokens actually run through the backbone
        self._cache: dict[str, tuple[list[int], list[tuple[Any, Any]]]] = {}

    @classmethod
    def from_pretrained(
        cls, path: str, tokenizer: Any = None, *, device: str = "cpu", dtype: str = "float32", **kwargs: Any
    ) -> CriticScorer:
        """Loads ``agentrl.critic.ValueModel`` from ``path``.

        Args:
            path: a critic folder written by ``ValueModel.save_pretrained`` (e.g. ``agentrl learn``'s ``OUT/critic``).
            tokenizer: the policy's tokenizer; default: the critic folder's own, else its base model's.
            device: torch device.
            dtype: float32, bfloat16 or float16.
        """
        import torch

        from agentrl.critic import ValueModel

        model = ValueModel.from_pretrained(path, dtype=getattr(torch, dtype), device=device)
        check_trained_at_afterstates(model, path)
        if tokenizer is None:
            from agentrl.models import load_tokenizer

            base = model.base if not (Path(path) / "tokenizer_config.json").is_file() else path
            if base is None:
                raise ValueError(f"{path}: the critic has no tokenizer and no base model to take one from")
            tokenizer = load_tokenizer(base)
        return cls(model, tokenizer, **kwargs)

    def encode(self, context: Context, candidate: Decision) -> tuple[list[int], int]:
        """Token ids of the chat ending with the candidate turn, and the index the value is read at (its
        afterstate: :func:`agentrl.data.encode_after_action`)."""
        messages = [*context.messages, {"role": "assistant", "content": candidate.raw}]
        ids, position = encode_after_action(self.tokenizer, messages, where=f"candidate {candidate.action!r}")
        if self.max_length is not None and len(ids) > self.max_length:
            ids = ids[-self.max_length :]
            position = len(ids) - 1
        return ids, position

    def release(self, cache_key: str) -> None:
        """Forgets a conversation's cached chat (its episode ended)."""
        self._cache.pop(cache_key, None)

    def score(
        self, contexts: Sequence[Context], candidates: Sequence[Sequence[Decision]]
    ) -> list[list[float]]:
        encoded = [
            [self.encode(ctx, cand) for cand in cands]
            for ctx, cands in zip(contexts, candidates, strict=True)
        ]
        if self.shared and all(len(ids) > 1 for group in encoded for ids, _ in group):
            return self._score_shared(contexts, encoded)
        return self._score_plain(encoded)

    def _score_plain(self, encoded: list[list[tuple[list[int], int]]]) -> list[list[float]]:
        """One right-padded batch of full sequences through ``model.values``."""
        import torch

        pairs = [(i, enc) for i, group in enumerate(encoded) for enc in group]
        flat: list[float] = []
        chunk = self.max_batch or max(1, len(pairs))
        device = next(self.model.parameters()).device
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            width = max(len(ids) for _, (ids, _) in part)
            input_ids = torch.full((len(part), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for row, (_, (ids, _)) in enumerate(part):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            with torch.inference_mode():
                values = self.model.values(input_ids.to(device), mask.to(device))  # [B, L]
            self.forwards += 1
            self.fed_tokens += int(mask.sum())
            index = torch.tensor([pos for _, (_, pos) in part], device=values.device)
            flat += values[torch.arange(len(part), device=values.device), index].float().cpu().tolist()
        out: list[list[float]] = [[] for _ in encoded]
        for (i, _), v in zip(pairs, flat, strict=True):
            out[i].append(v)
        return out

    def _score_shared(
        self, contexts: Sequence[Context], encoded: list[list[tuple[list[int], int]]]
    ) -> list[list[float]]:
        """Chat once per context (on top of its carried cache), then every candidate's tail on top of that."""
        prefixes = []
        for group in encoded:
            seqs = [ids for ids, _ in group]
            n = min(len(ids) for ids in seqs) - 1  # every candidate keeps >= 1 token of its own
            p = 0
            while p < n and all(ids[p] == seqs[0][p] for ids in seqs):
                p += 1
            prefixes.append(seqs[0][:p])
        keys = [ctx.memory.get("cache_key") if self.carry_cache else None for ctx in contexts]
        past = []
        for key, prefix in zip(keys, prefixes, strict=True):
            entry = self._cache.get(key) if key else None
            if entry is None and self._cache:  # a new episode: reuse another chat's prefix (system prompt, task)
                entry = max(self._cache.values(), key=lambda e: common_prefix(e[0], prefix))
            keep = common_prefix(entry[0], prefix) if entry else 0
            keep = min(keep, len(prefix) - 1)  # feed >= 1 token so the row has a new state
            past.append(
                (prefix[:keep], [(k[:, :, :keep], v[:, :, :keep]) for k, v in entry[1]]) if keep > 0 else None
            )
        _, chat_kv = self._extend(
            past, [prefix[len(p[0]) if p else 0 :] for p, prefix in zip(past, prefixes, strict=True)]
        )
        for key, prefix, kv in zip(keys, prefixes, chat_kv, strict=True):
            if key:
                self._cache[key] = (prefix, kv)
        tails = [[ids[len(prefixes[i]) :] for ids, _ in group] for i, group in enumerate(encoded)]
        return self._score_tails(list(zip(prefixes, chat_kv, strict=True)), tails)

    def _score_tails(self, past: list[Any], tails: list[list[list[int]]]) -> list[list[float]]:
        """All candidate tails of a context packed in one row on top of its chat's KV cache; one forward.

        Row ``i`` is ``[pad .. chat_i][pad .. tail_i1 tail_i2 ...]``. A 4D attention mask lets each tail token
        see the chat and the earlier tokens of its own tail only (block-diagonal), and each tail's positions
        restart where the chat ends, so every tail is computed exactly as if it were alone after the chat --
        without copying the chat's KV cache once per candidate.
        """
        import torch
        from transformers import DynamicCache

        from agentrl.critic import active_adapter, decoder_of

        device = next(self.model.parameters()).device
        rows = len(tails)
        plen = max(len(p[0]) for p in past)
        qlen = max(sum(len(t) for t in group) for group in tails)
        ids = torch.full((rows, qlen), self.pad_id, dtype=torch.long)
        positions = torch.zeros((rows, qlen), dtype=torch.long)
        mask = torch.zeros((rows, 1, qlen, plen + qlen), dtype=torch.bool)
        ends: list[list[int]] = []
        for r, ((chat, _), group) in enumerate(zip(past, tails, strict=True)):
            start = qlen - sum(len(t) for t in group)
            for q in range(start):  # pad queries attend to themselves only (keeps them finite)
                mask[r, 0, q, plen + q] = True
            ends.append([])
            for tail in group:
                stop = start + len(tail)
                ids[r, start:stop] = torch.tensor(tail)
                positions[r, start:stop] = torch.arange(len(chat), len(chat) + len(tail))
                mask[r, 0, start:stop, plen - len(chat) : plen] = True  # the chat (its real tokens)
                mask[r, 0, start:stop, plen + start : plen + stop] = torch.ones(len(tail), len(tail)).tril().bool()
                ends[-1].append(stop - 1)
                start = stop
        layers = []
        for layer, (k0, v0) in enumerate(past[0][1]):
            keys = k0.new_zeros((rows, k0.shape[1], plen, k0.shape[3]))
            vals = v0.new_zeros((rows, v0.shape[1], plen, v0.shape[3]))
            for r, (chat, kv) in enumerate(past):
                keys[r, :, plen - len(chat) :] = kv[layer][0][0]
                vals[r, :, plen - len(chat) :] = kv[layer][1][0]
            layers.append((keys, vals))
        backbone = self.model.backbone
        with torch.inference_mode(), active_adapter(backbone, getattr(self.model, "adapter", None)):
            out = decoder_of(backbone)(input_ids=ids.to(device), attention_mask=mask.to(device),
                                       position_ids=positions.to(device),
                                       past_key_values=DynamicCache(ddp_cache_data=layers), use_cache=True)
            head = self.model.value_head
            values = head(out.last_hidden_state.to(head.weight.dtype)).squeeze(-1).float().cpu()  # [E, Q]
        self.forwards += 1
        self.fed_tokens += sum(len(t) for group in tails for t in group)
        return [[float(values[r, e]) for e in row_ends] for r, row_ends in enumerate(ends)]

    def _extend(self, past: list[Any], new: list[list[int]]) -> tuple[list[float], list[list[tuple[Any, Any]]]]:
        """Runs ``new[i]`` on top of ``past[i]`` (``(ids, kv)`` or None) for all rows in one forward.

        Rows are ``[pad .. past_i][pad .. new_i]`` with mask 0 on pads and positions from the mask's cumsum
        (as in the transformers backend). Returns each row's value at its last token and its compact KV.
        """
        import torch
        from transformers import DynamicCache

        from agentrl.critic import active_adapter, decoder_of

        device = next(self.model.parameters()).device
        rows = len(new)
        plen = max((len(p[0]) for p in past if p), default=0)
        nlen = max(len(n) for n in new)
        ids = torch.full((rows, plen + nlen), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, plen + nlen), dtype=torch.long)
        for r, (p, n) in enumerate(zip(past, new, strict=True)):
            if p:
                ids[r, plen - len(p[0]) : plen] = torch.tensor(p[0])
                mask[r, plen - len(p[0]) : plen] = 1
            ids[r, plen + nlen - len(n) :] = torch.tensor(n)
            mask[r, plen + nlen - len(n) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        if plen:
            template = next(p[1] for p in past if p)
            layers = []
            for layer, (k0, v0) in enumerate(template):
                keys = k0.new_zeros((rows, k0.shape[1], plen, k0.shape[3]))
                vals = v0.new_zeros((rows, v0.shape[1], plen, v0.shape[3]))
                for r, p in enumerate(past):
                    if p:
                        keys[r, :, plen - len(p[0]) :] = p[1][layer][0][0]
                        vals[r, :, plen - len(p[0]) :] = p[1][layer][1][0]
                layers.append((keys, vals))
            cache = DynamicCache(ddp_cache_data=layers)
        backbone = self.model.backbone
        with torch.inference_mode(), active_adapter(backbone, getattr(self.model, "adapter", None)):
            out = decoder_of(backbone)(
                input_ids=ids[:, plen:],
                attention_mask=mask,
                position_ids=positions[:, plen:],
                past_key_values=cache,
                use_cache=True,
            )
            head = self.model.value_head
            last = out.last_hidden_state[:, -1]
            values = head(last.to(head.weight.dtype)).squeeze(-1).float().cpu().tolist()
        self.forwards += 1
        self.fed_tokens += int(mask[:, plen:].sum())
        kv: list[list[tuple[Any, Any]]] = []
        for r in range(rows):
            keep = mask[r].bool()
            kv.append(
                [
                    (layer.keys[r : r + 1][:, :, keep], layer.values[r : r + 1][:, :, keep])
                    for layer in out.past_key_values.layers
                ]
            )
        return values, kv


class OracleScorer:
    """:class:`ActionScorer` from a known cost-to-go: ``value = -remaining_plan(context, action)``.

    Used to check the controller without learning: with the expert's remaining plan length after taking the
    candidate as the cost, the best candidate is the one that brings the expert's goal closest.

    Args:
        remaining_plan: ``(context, action) -> steps the expert still needs after taking action``.
    """

    def __init__(self, remaining_plan: Callable[[Context, str], float]):
        self.remaining_plan = remaining_plan
        self.calls = 0

    def score(
        self, contexts: Sequence[Context], candidates: Sequence[Sequence[Decision]]
    ) -> list[list[float]]:
        self.calls += 1
        return [
            [-float(self.remaining_plan(ctx, c.action)) for c in cands]
            for ctx, cands in zip(contexts, candidates, strict=True)
        ]


def expert_agreement_plan(context: Context, action: str) -> float:
    """Remaining plan length relative to now, from the env's ``info["expert_action"]`` alone.

    Following the expert shortens its plan by one step (``-1``); any other action costs at least a detour
    (the step taken plus one to undo it: ``+1``). Only differences between candidates of one context matter,
    so the unknown absolute plan length cancels out.
    """
    expert = context.info.get("expert_action")
    if expert is None:
        raise KeyError("expert_agreement_plan needs info['expert_action'] from the env")
    return -1.0 if normalize_action(action) == normalize_action(expert) else 1.0


def normalize_action(action: str) -> str:
    """Case- and whitespace-insensitive form of an action (``" Go  to X"`` == ``"go to x"``)."""
    return " ".join(action.strip().lower().split())
