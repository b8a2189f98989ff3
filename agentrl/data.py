"""Learner input: trajectories -> token ids, action masks, state positions, rewards, DPO pairs, reference cache.

Position conventions (shared with :mod:`agentrl.critic` and best-of-K):

* ``input_ids[i]`` is token ``i`` of the chat rendered by the tokenizer's chat template;
  ``action_mask[i]`` is True when token ``i`` was produced by the policy: the content tokens of every
  assistant turn **and** its end-of-turn token (``<|im_end|>`` for ChatML), so the model learns to stop.
  ``log pi(x_i | x_<i)`` comes from the logits at position ``i - 1``.
* The state before token ``i`` is the prefix ``x_<i``; its value ``V`` is read at position ``i - 1``
  (the critic's value at position ``t`` is the value head on the hidden state of token ``t``).
* A *segment* is one action of the chosen level, and ``state_positions[k]`` is where ``V`` of the state
  before segment ``k`` is read:

  - ``token``: every action token is a segment; its state is the previous position;
  - ``step``: every assistant turn is a segment, its state is the last token before the turn's content
    (agents); with ``step_delimiters`` (math: ``["\\n"]``, MATH: ``["\\n", ". "]``) each piece of a turn
    that ends with a delimiter is its own segment;
  - ``response``: one segment covering all action tokens; its state is before the first action token.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agentrl.errors import AgentRLError
from agentrl.types import Episode

LEVELS = ("token", "step", "response")


class DataError(AgentRLError, ValueError):
    """Trajectories cannot be turned into learner input; the message names the episode."""


@dataclass
class TokenizedEpisode:
    """One episode as the learner sees it (see the module docstring for position conventions)."""

    input_ids: list[int]
    action_mask: list[bool]
    segments: list[int]  # segment of each token, -1 where action_mask is False
    state_positions: list[int]  # one per segment
    turn_ends: list[int]  # position of each assistant turn's end-of-turn token (or last content token)
    reward: float
    success: bool
    task_id: str
    episode_id: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_actions(self) -> int:
        return sum(self.action_mask)


def parse_reward_map(text: str | dict | None) -> dict[float, float] | None:
    """``"0:-1,1:1"`` (or a mapping) -> ``{0.0: -1.0, 1.0: 1.0}``; empty or ``"none"`` -> ``None`` (identity)."""
    if text is None or (isinstance(text, str) and text.strip().lower() in {"", "none", "identity"}):
        return None
    if isinstance(text, dict):
        return {float(k): float(v) for k, v in text.items()}
    mapping: dict[float, float] = {}
    for part in str(text).split(","):
        key, sep, value = part.partition(":")
        try:
            if not sep:
                raise ValueError(part)
            mapping[float(key)] = float(value)
        except ValueError:
            raise DataError(
                f"reward map: expected `raw:mapped[,...]` such as `0:-1,1:1`, got {part!r}"
            ) from None
    return mapping


def map_reward(episode: Episode, mapping: dict[float, float] | None) -> float:
    """The episode's terminal reward after ``mapping`` (the paper maps {0, 1} to {-1, 1} for math)."""
    raw = float(episode.reward)
    if mapping is None:
        return raw
    if raw not in mapping:
        raise DataError(
            f"episode {episode.episode_id}: reward {raw} has no entry in the reward map {mapping} "
            "(pass --reward-map none to use raw rewards)"
        )
    return mapping[raw]


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _action_char_spans(
    tokenizer: Any, messages: list[dict[str, str]], where: str
) -> list[tuple[int, int, int]]:
    """``(start, content_end, end)`` character spans of each assistant turn in the rendered chat.

    Renders the chat prefix by prefix: the turn's content starts where the prompt with a generation prompt
    ends; the end-of-turn token is the first token after the content.
    """
    spans = []
    full = _render(tokenizer, messages)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1])
        content = message.get("content") or ""
        if not (
            upto.startswith(prompt) and full.startswith(upto) and upto[len(prompt) :].startswith(content)
        ):
            raise DataError(
                f"{where}: the chat template does not render assistant turn {i} as prompt + content + "
                "end-of-turn (templates that rewrite earlier turns are not supported)"
            )
        start, content_end = len(prompt), len(prompt) + len(content)
        tail = upto[content_end:]
        eot = 0
        if tail:
            tail_offsets = tokenizer(tail, add_special_tokens=False, return_offsets_mapping=True)[
                "offset_mapping"
            ]
            eot = tail_offsets[0][1] if tail_offsets else 0
        spans.append((start, content_end, content_end + eot))
    return spans


def tokenize_episode(
    episode: Episode,
    tokenizer: Any,
    *,
    level: str = "token",
    step_delimiters: Sequence[str] = (),
    reward_map: dict[float, float] | None = None,
    where: str = "",
) -> TokenizedEpisode:
    """Renders ``episode.messages`` with the chat template and marks actions, segments and states.

    Args:
        episode: an episode with ``messages`` (the chat exactly as the policy saw it).
        tokenizer: a Hugging Face tokenizer with a chat template and offset mapping (a fast tokenizer).
        level: ``token``, ``step`` or ``response`` (see the module docstring).
        step_delimiters: at the step level, strings after which a new step starts inside a turn.
        reward_map: raw reward -> training reward (``None``: identity).
        where: prefix for error messages (``file:line``).

    Returns:
        The tokenized episode.

    Raises:
        DataError: no messages, no assistant turn, or a template that does not render turns as prefixes.
    """
    where = where or f"episode {episode.episode_id}"
    if level not in LEVELS:
        raise DataError(f"level must be one of {LEVELS}, got {level!r}")
    if not episode.messages:
        raise DataError(f"{where}: the episode has no `messages` (the learner trains on the chat)")
    spans = _action_char_spans(tokenizer, episode.messages, where)
    if not spans:
        raise DataError(f"{where}: the episode has no assistant turn")
    text = _render(tokenizer, episode.messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]

    pattern = re.compile("|".join(re.escape(d) for d in step_delimiters if d)) if step_delimiters else None
    action_mask = [False] * len(ids)
    segments = [-1] * len(ids)
    turn_ends: list[int] = []
    seg = -1
    for start, content_end, end in spans:
        # character offsets (absolute) at which a new step starts inside this turn
        cuts = [start]
        if level == "step" and pattern is not None:
            content = text[start:content_end]
            cuts += [start + m.end() for m in pattern.finditer(content) if start + m.end() < content_end]
        first_seg = seg + 1
        last_tok = -1
        for i, (a, _b) in enumerate(offsets):
            if start <= a < end:
                action_mask[i] = True
                last_tok = i
                if level == "token":
                    seg += 1
                    segments[i] = seg
                else:
                    segments[i] = first_seg + sum(1 for c in cuts[1:] if a >= c)
        if last_tok < 0:
            raise DataError(f"{where}: an assistant turn has no tokens")
        turn_ends.append(last_tok)
        if level != "token":
            seg = max(segments[: last_tok + 1])
    if level == "response":
        segments = [0 if s >= 0 else -1 for s in segments]
    # Dense numbering: a cut inside a token (e.g. the first "\n" of a "\n\n" token) leaves no empty step.
    dense = {old: new for new, old in enumerate(sorted(set(s for s in segments if s >= 0)))}
    segments = [dense[s] if s >= 0 else -1 for s in segments]
    state_positions = [-1] * len(dense)
    for i, s in enumerate(segments):
        if s >= 0 and state_positions[s] < 0:
            state_positions[s] = i - 1
    if min(state_positions) < 0:
        raise DataError(f"{where}: an action starts at token 0 (the chat must start with a prompt)")
    return TokenizedEpisode(
        input_ids=ids,
        action_mask=action_mask,
        segments=segments,
        state_positions=state_positions,
        turn_ends=turn_ends,
        reward=map_reward(episode, reward_map),
        success=bool(episode.success),
        task_id=str(episode.task_id),
        episode_id=str(episode.episode_id),
    )


def load_tokenized(
    paths: str | Iterable[str | Path],
    tokenizer: Any,
    *,
    level: str = "token",
    step_delimiters: Sequence[str] = (),
    reward_map: dict[float, float] | None = None,
    max_length: int = 2048,
    only_success: bool = False,
) -> tuple[list[TokenizedEpisode], dict[str, int]]:
    """Reads trajectory JSONL file(s) and tokenizes every episode.

    Episodes longer than ``max_length`` tokens are dropped (OREO's value targets need the whole
    trajectory up to its terminal reward); so are episodes with an ``error``.

    Returns:
        The tokenized episodes and counts ``{"read", "kept", "too_long", "errored", "failed"}``.
    """
    from agentrl.trajectory import iter_episodes

    if isinstance(paths, str | Path):
        paths = [p for p in str(paths).split(",") if p]
    out: list[TokenizedEpisode] = []
    counts = {"read": 0, "kept": 0, "too_long": 0, "errored": 0, "failed": 0}
    for path in paths:
        for number, episode in enumerate(iter_episodes(path), start=1):
            counts["read"] += 1
            if episode.error:
                counts["errored"] += 1
                continue
            if only_success and not episode.success:
                counts["failed"] += 1
                continue
            item = tokenize_episode(
                episode,
                tokenizer,
                level=level,
                step_delimiters=step_delimiters,
                reward_map=reward_map,
                where=f"{path}: episode {number} ({episode.episode_id})",
            )
            if len(item.input_ids) > max_length:
                counts["too_long"] += 1
                continue
            out.append(item)
    counts["kept"] = len(out)
    return out, counts


def dpo_pairs(episodes: Sequence[TokenizedEpisode], seed: int = 0) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs: a success and a failure of the same task.

    Within each task the successes and failures are shuffled (seeded) and zipped, so every pair is
    distinct and ``min(#success, #failure)`` pairs come from each task.
    """
    by_task: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, ep in enumerate(episodes):
        by_task[ep.task_id][0 if ep.success else 1].append(i)
    rng = random.Random(seed)
    pairs = []
    for task in sorted(by_task):
        wins, losses = by_task[task]
        rng.shuffle(wins)
        rng.shuffle(losses)
        pairs.extend(zip(wins, losses, strict=False))
    return pairs


@dataclass
class ReferenceCache:
    """Reference-policy numbers per episode, computed once per dataset (before the first update).

    ``logps[e]``: ``[n_e]`` log pi_ref of episode ``e``'s action tokens; ``topk_ids[e]`` / ``topk_logps[e]``:
    ``[n_e, k]`` the reference's top-k tokens and log-probs at those positions (for the KL regulariser).
    """

    logps: list[torch.Tensor]
    topk_ids: list[torch.Tensor]
    topk_logps: list[torch.Tensor]
    fingerprint: str

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        lengths = torch.tensor([len(x) for x in self.logps], dtype=torch.long)
        tensors = {
            "lengths": lengths,
            "logps": torch.cat(self.logps).float().contiguous(),
            "topk_ids": torch.cat(self.topk_ids).to(torch.int32).contiguous(),
            "topk_logps": torch.cat(self.topk_logps).float().contiguous(),
        }
        tmp = Path(str(path) + ".tmp")
        save_file(tensors, str(tmp), metadata={"fingerprint": self.fingerprint})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, fingerprint: str) -> ReferenceCache | None:
        """The cache at ``path`` if it was made for ``fingerprint`` (same model, data and settings), else None."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("fingerprint") != fingerprint:
                return None
        t = load_file(str(path))
        lengths = t["lengths"].tolist()
        return cls(
            logps=list(torch.split(t["logps"], lengths)),
            topk_ids=list(torch.split(t["topk_ids"].long(), lengths)),
            topk_logps=list(torch.split(t["topk_logps"], lengths)),
            fingerprint=fingerprint,
        )


def fingerprint(*parts: Any) -> str:
    """A short hash of the things a reference cache depends on (model, data files, settings)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) or (isinstance(part, str) and Path(part).is_file()):
            p = Path(part)
            h.update(str(p.resolve()).encode())
            if p.is_file():
                h.update(p.read_bytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def collate(
    episodes: Sequence[TokenizedEpisode],
    pad_id: int,
    indices: Sequence[int] | None = None,
    ref: ReferenceCache | None = None,
) -> dict[str, torch.Tensor]:
    """Right-pads episodes into a batch.

    Returns (``B`` episodes, ``L`` longest, ``S`` most segments, ``N`` action tokens, ``k`` top-k):
        ``input_ids [B, L]``, ``attention_mask [B, L]``, ``action_mask [B, L]`` bool,
        ``targets [N]`` the action tokens in row-major order, ``action_rows [N]``, ``action_segments [N]``
        (``row * S + segment``), ``state_positions [B, S]``, ``state_mask [B, S]``, ``reward [B]``, and with
        ``ref``: ``ref_logps [N]``, ``ref_topk_ids [N, k]``, ``ref_topk_logps [N, k]``.
    """
    b = len(episodes)
    length = max(len(e.input_ids) for e in episodes)
    num_segments = max(len(e.state_positions) for e in episodes)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    attention = torch.zeros((b, length), dtype=torch.long)
    action = torch.zeros((b, length), dtype=torch.bool)
    segments = torch.full((b, length), -1, dtype=torch.long)
    states = torch.zeros((b, num_segments), dtype=torch.long)
    state_mask = torch.zeros((b, num_segments), dtype=torch.bool)
    for r, e in enumerate(episodes):
        n = len(e.input_ids)
        input_ids[r, :n] = torch.tensor(e.input_ids)
        attention[r, :n] = 1
        action[r, :n] = torch.tensor(e.action_mask)
        segments[r, :n] = torch.tensor(e.segments)
        states[r, : len(e.state_positions)] = torch.tensor(e.state_positions)
        state_mask[r, : len(e.state_positions)] = True
    rows = torch.arange(b)[:, None].expand(b, length)[action]
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "action_mask": action,
        "targets": input_ids[action],
        "action_rows": rows,
        "action_segments": rows * num_segments + segments[action],
        "state_positions": states,
        "state_mask": state_mask,
        "reward": torch.tensor([e.reward for e in episodes], dtype=torch.float32),
    }
    if ref is not None:
        if indices is None:
            raise ValueError("collate: `indices` (dataset positions of the episodes) is needed with `ref`")
        batch["ref_logps"] = torch.cat([ref.logps[i] for i in indices])
        batch["ref_topk_ids"] = torch.cat([ref.topk_ids[i] for i in indices])
        batch["ref_topk_logps"] = torch.cat([ref.topk_logps[i] for i in indices])
    return batch
