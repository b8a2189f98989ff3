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

from agentrl import kv_cache
from agentrl.backends.transformers_backend import end_of_turn_id
from agentrl.data import encode_after_action
from agentrl.kv_cache import CachedPrefix, PrefixStore
from agentrl.models import ModelError, load_tokenizer
from agentrl.policies.base import Context, Decision


@runtime_checkable
class ActionScorer(Protocol):
    """Scores candidate decisions: ``score(contexts, candidates)[i][j]`` is V(contexts[i] + candidates[i][j])."""

    def score(
        self, contexts: Sequence[Context], candidates: Sequence[Sequence[Decision]]
    ) -> list[list[float]]: ...


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
        self._cache = PrefixStore()

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
        """Forgets a conversation's cached chat (its episode ended); it stays as a prefix donor for a new one."""
        self._cache.release(cache_key)

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
        # a new episode reuses another chat's prefix (system prompt, task); >= 1 token is fed per row
        pasts = [self._cache.lookup(key, prefix) for key, prefix in zip(keys, prefixes, strict=True)]
        chats = self._extend(
            pasts, [prefix[keep:] for prefix, (_, keep) in zip(prefixes, pasts, strict=True)]
        )
        for key, chat in zip(keys, chats, strict=True):
            if key:
                self._cache[key] = chat
        tails = [[ids[len(prefixes[i]) :] for ids, _ in group] for i, group in enumerate(encoded)]
        return self._score_tails(chats, tails)

    def _forward(self, cache: Any, **inputs: Any) -> tuple[Any, Any]:
        """The backbone's decoder on top of ``cache`` (with the critic's adapter active): hidden states, cache."""
        import torch

        from agentrl.critic import active_adapter, decoder_of

        backbone = self.model.backbone
        device = next(self.model.parameters()).device
        inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
        with torch.inference_mode(), active_adapter(backbone, getattr(self.model, "adapter", None)):
            out, cache = kv_cache.forward(decoder_of(backbone), cache, **inputs)
        self.forwards += 1
        return out.last_hidden_state, cache

    def _values(self, hidden: Any) -> Any:
        """The value head on hidden states ``[..., H]`` -> ``[...]`` (float32, CPU)."""
        import torch

        head = self.model.value_head
        with torch.inference_mode():
            return head(hidden.to(head.weight.dtype)).squeeze(-1).float().cpu()

    def _score_tails(self, chats: list[CachedPrefix], tails: list[list[list[int]]]) -> list[list[float]]:
        """All candidate tails of a context packed in one row on top of its chat's KV cache; one forward.

        Row ``i`` is ``[pad .. chat_i][pad .. tail_i1 tail_i2 ...]`` (:func:`agentrl.kv_cache.packed_tails`): each
        tail is computed exactly as if it were alone after the chat, without copying the chat's KV cache once per
        candidate. The value is read at each tail's last token.
        """
        import torch

        device = next(self.model.parameters()).device
        width = max(len(chat.ids) for chat in chats)
        cache = kv_cache.stack([(chat, len(chat.ids)) for chat in chats], width, device)
        past_mask = torch.zeros((len(chats), width), dtype=torch.bool, device=device)
        for r, chat in enumerate(chats):
            past_mask[r, width - len(chat.ids) :] = True
        packed = kv_cache.packed_tails(past_mask, tails, self.pad_id)
        hidden, _ = self._forward(
            cache, input_ids=packed.input_ids, attention_mask=packed.mask, position_ids=packed.positions
        )
        values = self._values(hidden)  # [E, Q]
        self.fed_tokens += sum(len(t) for group in tails for t in group)
        return [[float(values[r, path[-1]]) for path in paths] for r, paths in enumerate(packed.paths)]

    def _extend(
        self, pasts: list[tuple[CachedPrefix | None, int]], new: list[list[int]]
    ) -> list[CachedPrefix]:
        """Runs ``new[i]`` on top of the first ``keep_i`` tokens of ``pasts[i]`` for all rows in one forward.

        Rows are ``[pad .. past_i][pad .. new_i]`` (:func:`agentrl.kv_cache.left_padded`). Returns each row's chat
        as a compact cached prefix.
        """
        device = next(self.model.parameters()).device
        batch = kv_cache.left_padded(pasts, new, self.pad_id, device)
        past = batch.past_len
        _, cache = self._forward(
            batch.cache,
            input_ids=batch.input_ids[:, past:],
            attention_mask=batch.mask,
            position_ids=batch.positions[:, past:],
        )
        self.fed_tokens += int(batch.mask[:, past:].sum())
        return kv_cache.row_prefixes(cache, batch.input_ids, batch.mask)


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
