"""Learner input: one episode -> token ids, action masks, state and afterstate positions, reward; a batch of them.

Reading trajectory files into the learner's items (filters, DPO pairs, the reference cache) is
:mod:`agentrl.training_data`.

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

* The *afterstate* of an assistant turn is the prefix that ends with the turn's end-of-turn token:
  the state right after the action, before the environment answers. ``after_positions[j]`` is where
  ``V`` of turn ``j``'s afterstate is read. It is **the** position of "the value of the state after action
  ``a``": best-of-K, beam search, the values recorded in trajectories (replay, plots) and the critic
  diagnostics all read it through :func:`encode_after_action`, and the learner trains the critic there
  (``agentrl learn --afterstates``, the default) with the target of the next state, so nothing that reads
  the critic ever reads an untrained position. See docs/learner.md, "Where the critic is read".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from agentrl.errors import AgentRLError
from agentrl.types import Episode

if TYPE_CHECKING:  # agentrl.training_data imports this module; collate only reads a cache's lists
    from agentrl.training_data import ReferenceCache

LEVELS = ("token", "step", "response")
OBSERVATIONS = ("later", "all")  # which user turns ``obs_mask`` marks (module docstring)


class DataError(AgentRLError, ValueError):
    """Trajectories cannot be turned into learner input; the message names the episode."""


@dataclass
class TokenizedEpisode:
    """One episode as the learner sees it (see the module docstring for position conventions)."""

    input_ids: list[int]
    action_mask: list[bool]
    segments: list[int]  # segment of each token, -1 where action_mask is False
    state_positions: list[int]  # one per segment
    after_positions: list[int]  # one per assistant turn: its end-of-turn token (or last content token)
    reward: float
    success: bool
    task_id: str
    episode_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    obs_mask: list[bool] = field(default_factory=list)  # observation tokens; empty: not asked for

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
    """The episode's terminal reward after ``mapping`` (``None``: the raw reward, the paper's 1 for a success
    and 0 otherwise; the OREO reference code's default maps {0, 1} to {-1, 1})."""
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


def _turn_char_span(
    tokenizer: Any, messages: list[dict[str, str]], i: int, full: str, where: str
) -> tuple[int, int, int]:
    """``(start, content_end, end)``: character span of assistant turn ``i`` in ``full``, the rendered chat.

    The turn's content starts where the prompt with a generation prompt ends; ``end`` is the end of the
    end-of-turn token, the first token after the content.
    """
    prompt = _render(tokenizer, messages[:i], generation_prompt=True)
    upto = _render(tokenizer, messages[: i + 1])
    content = messages[i].get("content") or ""
    if not (upto.startswith(prompt) and full.startswith(upto) and upto[len(prompt) :].startswith(content)):
        raise DataError(
            f"{where}: the chat template does not render assistant turn {i} as prompt + content + "
            "end-of-turn (templates that rewrite earlier turns are not supported)"
        )
    start, content_end = len(prompt), len(prompt) + len(content)
    tail = upto[content_end:]
    eot = 0
    if tail:
        tail_offsets = tokenizer(tail, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        eot = tail_offsets[0][1] if tail_offsets else 0
    return start, content_end, content_end + eot


def _action_char_spans(
    tokenizer: Any, messages: list[dict[str, str]], where: str, full: str
) -> list[tuple[int, int, int]]:
    """:func:`_turn_char_span` of every assistant turn, in order."""
    return [
        _turn_char_span(tokenizer, messages, i, full, where)
        for i, message in enumerate(messages)
        if message.get("role") == "assistant"
    ]


def _observation_char_spans(
    tokenizer: Any, messages: list[dict[str, str]], where: str, full: str, observations: str
) -> list[tuple[int, int]]:
    """``(start, end)`` character spans in ``full`` of the user turns' contents that :data:`OBSERVATIONS`
    ``observations`` names (``later``: every user turn after the first; ``all``: every user turn)."""
    users = [i for i, message in enumerate(messages) if message.get("role") == "user"]
    spans = []
    for i in users[1:] if observations == "later" else users:
        content = (messages[i].get("content") or "").strip()
        if not content:
            continue
        upto = _render(tokenizer, messages[: i + 1])
        start = upto.rfind(content)  # the turn's content is the last thing before its end-of-turn
        if start < 0 or not full.startswith(upto):
            raise DataError(
                f"{where}: the chat template does not render user turn {i} as a prefix of the chat with its "
                "content (templates that rewrite earlier turns are not supported)"
            )
        spans.append((start, start + len(content)))
    return spans


def _observation_mask(
    tokenizer: Any,
    messages: list[dict[str, str]],
    where: str,
    full: str,
    offsets: Sequence[tuple[int, int]],
    observations: str | None,
) -> list[bool]:
    """``obs_mask`` of the tokens with ``offsets`` (module docstring); ``[]`` when ``observations`` is None."""
    if observations is None:
        return []
    if observations not in OBSERVATIONS:
        raise DataError(f"observations must be one of {OBSERVATIONS}, got {observations!r}")
    spans = _observation_char_spans(tokenizer, messages, where, full, observations)
    return [i > 0 and any(a <= o < b for a, b in spans) for i, (o, _e) in enumerate(offsets)]


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The learner's tokenization of a rendered chat: ids and character offsets (no added special tokens)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _last_token_in(offsets: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """Index of the last token that starts inside ``[start, end)``, or -1."""
    last = -1
    for i, (a, _b) in enumerate(offsets):
        if start <= a < end:
            last = i
    return last


def encode_after_action(
    tokenizer: Any, messages: list[dict[str, str]], where: str = "the chat"
) -> tuple[list[int], int]:
    """Token ids of a chat that ends with an assistant turn, cut after that turn, and its afterstate position.

    This is the one definition of "the state after action ``a``" (module docstring): for
    ``messages = context + [assistant: a]`` it returns ``(ids, p)`` with ``ids`` exactly the learner's
    tokens of that chat up to and including the turn's end-of-turn token, and ``p = len(ids) - 1`` the
    position the learner trains as that turn's afterstate (``TokenizedEpisode.after_positions``).

    Raises:
        DataError: the last message is not an assistant turn, or the template cannot be split into turns.
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise DataError(f"{where}: the chat must end with the assistant turn to be valued")
    text = _render(tokenizer, messages)
    start, _content_end, end = _turn_char_span(tokenizer, messages, len(messages) - 1, text, where)
    ids, offsets = _encode(tokenizer, text)
    position = _last_token_in(offsets, start, end)
    if position < 0:
        raise DataError(f"{where}: the assistant turn has no tokens")
    return ids[: position + 1], position


def _mark_turn(
    offsets: Sequence[tuple[int, int]],
    span: tuple[int, int, int],
    cuts: list[int],
    level: str,
    seg: int,
    action_mask: list[bool],
    segments: list[int],
) -> int:
    """Marks one assistant turn's tokens as actions and numbers their segments; returns its last token.

    ``seg`` is the last segment number used before this turn; ``cuts`` are the absolute character offsets
    at which a new step starts inside the turn (step level).
    """
    start, _content_end, end = span
    last = -1
    for i, (a, _b) in enumerate(offsets):
        if not start <= a < end:
            continue
        action_mask[i] = True
        last = i
        if level == "token":
            seg += 1
            segments[i] = seg
        else:
            segments[i] = seg + 1 + sum(1 for c in cuts if a >= c)
    return last


def _state_positions(segments: list[int], where: str) -> tuple[list[int], list[int]]:
    """Dense segment numbers (a cut inside a token, e.g. the first "\\n" of a "\\n\\n" token, leaves no
    empty step) and the state position of each segment (the token before its first token)."""
    dense = {old: new for new, old in enumerate(sorted(set(s for s in segments if s >= 0)))}
    segments = [dense[s] if s >= 0 else -1 for s in segments]
    state_positions = [-1] * len(dense)
    for i, s in enumerate(segments):
        if s >= 0 and state_positions[s] < 0:
            state_positions[s] = i - 1
    if min(state_positions) < 0:
        raise DataError(f"{where}: an action starts at token 0 (the chat must start with a prompt)")
    return segments, state_positions


def tokenize_episode(
    episode: Episode,
    tokenizer: Any,
    *,
    level: str = "token",
    step_delimiters: Sequence[str] = (),
    reward_map: dict[float, float] | None = None,
    where: str = "",
    observations: str | None = None,
    last_turn_only: bool = False,
) -> TokenizedEpisode:
    """Renders ``episode.messages`` with the chat template and marks actions, segments, states, afterstates.

    Args:
        episode: an episode with ``messages`` (the chat exactly as the policy saw it).
        tokenizer: a Hugging Face tokenizer with a chat template and offset mapping (a fast tokenizer).
        level: ``token``, ``step`` or ``response`` (see the module docstring).
        step_delimiters: at the step level, strings after which a new step starts inside a turn.
        reward_map: raw reward -> training reward (``None``: identity).
        where: prefix for error messages (``file:line``).
        observations: ``later`` | ``all``: also mark the observation tokens (``obs_mask``, module docstring);
            ``None`` (default): ``obs_mask`` stays empty.
        last_turn_only: only the chat's last assistant turn is an action (a
            :func:`agentrl.training_data.turn_windows` chat: the earlier turns are the prompt's history).

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
    text = _render(tokenizer, episode.messages)
    if last_turn_only:
        last = [i for i, m in enumerate(episode.messages) if m.get("role") == "assistant"][-1:]
        spans = [_turn_char_span(tokenizer, episode.messages, i, text, where) for i in last]
    else:
        spans = _action_char_spans(tokenizer, episode.messages, where, text)
    if not spans:
        raise DataError(f"{where}: the episode has no assistant turn")
    ids, offsets = _encode(tokenizer, text)

    pattern = re.compile("|".join(re.escape(d) for d in step_delimiters if d)) if step_delimiters else None
    action_mask = [False] * len(ids)
    segments = [-1] * len(ids)
    after_positions: list[int] = []
    seg = -1
    for start, content_end, end in spans:
        cuts = []  # character offsets (absolute) at which a new step starts inside this turn
        if level == "step" and pattern is not None:
            content = text[start:content_end]
            cuts = [start + m.end() for m in pattern.finditer(content) if start + m.end() < content_end]
        last = _mark_turn(offsets, (start, content_end, end), cuts, level, seg, action_mask, segments)
        if last < 0:
            raise DataError(f"{where}: an assistant turn has no tokens")
        after_positions.append(last)
        seg = max(segments[: last + 1])
    if level == "response":
        segments = [0 if s >= 0 else -1 for s in segments]
    segments, state_positions = _state_positions(segments, where)
    return TokenizedEpisode(
        input_ids=ids,
        action_mask=action_mask,
        segments=segments,
        state_positions=state_positions,
        after_positions=after_positions,
        reward=map_reward(episode, reward_map),
        success=bool(episode.success),
        task_id=str(episode.task_id),
        episode_id=str(episode.episode_id),
        obs_mask=_observation_mask(tokenizer, episode.messages, where, text, offsets, observations),
    )


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
        (``row * S + segment``), ``state_positions [B, S]``, ``state_mask [B, S]``, ``after_positions [B, T]``
        and ``after_mask [B, T]`` (``T`` most assistant turns: the afterstates), ``reward [B]``, with
        ``ref``: ``ref_logps [N]``, ``ref_topk_ids [N, k]``, ``ref_topk_logps [N, k]``, and when the episodes
        carry observation masks (``M`` observation tokens): ``obs_mask [B, L]`` bool, ``obs_targets [M]``,
        ``obs_rows [M]``.
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
    num_turns = max(len(e.after_positions) for e in episodes)
    after = torch.zeros((b, num_turns), dtype=torch.long)
    after_mask = torch.zeros((b, num_turns), dtype=torch.bool)
    for r, e in enumerate(episodes):
        n = len(e.input_ids)
        input_ids[r, :n] = torch.tensor(e.input_ids)
        attention[r, :n] = 1
        action[r, :n] = torch.tensor(e.action_mask)
        segments[r, :n] = torch.tensor(e.segments)
        states[r, : len(e.state_positions)] = torch.tensor(e.state_positions)
        state_mask[r, : len(e.state_positions)] = True
        after[r, : len(e.after_positions)] = torch.tensor(e.after_positions)
        after_mask[r, : len(e.after_positions)] = True
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
        "after_positions": after,
        "after_mask": after_mask,
        "reward": torch.tensor([e.reward for e in episodes], dtype=torch.float32),
    }
    if ref is not None:
        if indices is None:
            raise ValueError("collate: `indices` (dataset positions of the episodes) is needed with `ref`")
        batch["ref_logps"] = torch.cat([ref.logps[i] for i in indices])
        batch["ref_topk_ids"] = torch.cat([ref.topk_ids[i] for i in indices])
        batch["ref_topk_logps"] = torch.cat([ref.topk_logps[i] for i in indices])
    if any(e.obs_mask for e in episodes):
        obs = torch.zeros((b, length), dtype=torch.bool)
        for r, e in enumerate(episodes):
            obs[r, : len(e.obs_mask)] = torch.tensor(e.obs_mask, dtype=torch.bool)
        batch["obs_mask"] = obs
        batch["obs_targets"] = input_ids[obs]
        batch["obs_rows"] = torch.arange(b)[:, None].expand(b, length)[obs]
    return batch
