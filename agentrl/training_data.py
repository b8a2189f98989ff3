"""The learner's dataset: trajectory files -> training items (tokenized episodes, DPO pairs) + the reference cache.

What one episode becomes (token ids, action masks, state and afterstate positions, the batch tensors) is
:mod:`agentrl.data`; this module reads the files that hold episodes, decides which episodes a learner may see
(errors, failures for RS, SFT-only data, length, ``--cap-positives``, ``--history`` windows), pairs them for DPO,
and keeps the reference policy's numbers for a dataset on disk (:class:`ReferenceCache`, keyed by
:func:`fingerprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agentrl import problem_outcomes
from agentrl.data import DataError, TokenizedEpisode, tokenize_episode
from agentrl.policies.prompts import window
from agentrl.trajectory import iter_episodes
from agentrl.types import Episode


def turn_windows(episode: Episode, history: int) -> list[Episode]:
    """One episode per assistant turn ``t``: its chat is what a ReAct agent with ``--history history`` sent before
    turn ``t`` (:func:`agentrl.policies.prompts.window`: system + opening user turn + the last ``history``
    (assistant, user) pairs) followed by turn ``t``; ids ``<episode_id>#turn<t>``, the episode's reward and task.
    """
    messages = episode.messages or []
    turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    return [
        dataclasses.replace(
            episode, messages=[*window(messages[:i], history), messages[i]], episode_id=f"{episode.episode_id}#turn{t}"
        )
        for t, i in enumerate(turns)
    ]


def _refuse_sft_only(episode: Episode, where: str) -> None:
    """Raises :class:`DataError` for an episode only SFT may learn from (DAgger labels, a renamed copy)."""
    if episode.meta.get("dagger") is not None:
        raise DataError(f"{where} is DAgger data (expert labels at the learner's states; its reward belongs to the "
                        "executed actions): only SFT learns from it")
    augment = episode.meta.get("augment")
    if augment is not None:
        source = augment.get("source") if isinstance(augment, dict) else augment
        raise DataError(f"{where} is a renamed copy (`agentrl augment`) of {source}: it was never played and its "
                        "reward is the source's, so only SFT learns from it")


def load_tokenized(
    paths: str | Iterable[str | Path],
    tokenizer: Any,
    *,
    level: str = "token",
    step_delimiters: Sequence[str] = (),
    reward_map: dict[float, float] | None = None,
    max_length: int = 2048,
    only_success: bool = False,
    allow_labels: bool = False,
    cap_positives: bool = False,
    seed: int = 0,
    observations: str | None = None,
    history: int | None = None,
) -> tuple[list[TokenizedEpisode], dict[str, int]]:
    """Reads trajectory JSONL file(s) and tokenizes every episode.

    Episodes longer than ``max_length`` tokens are dropped (OREO's value targets need the whole
    trajectory up to its terminal reward); so are episodes with an ``error``.

    Args:
        allow_labels: accept DAgger episodes (``meta["dagger"]``). Their chat holds the expert's *labels* at
            the states the learner visited, while their reward belongs to the actions actually executed: they
            are behaviour-cloning data (SFT), and a learner that reads rewards (OREO, RS, DPO, DQO, OREAL) must
            not see them, so by default they are refused. The same holds for renamed copies
            (``meta["augment"]``, :mod:`agentrl.augment`): text never played in the env, with the source's reward.
        cap_positives: keep at most as many successes per problem (``task_id``) as it has failures, a choice
            seeded by ``seed`` (:func:`agentrl.problem_outcomes.cap_positives`).
        observations: mark observation tokens too (:func:`agentrl.data.tokenize_episode`).
        history: ``N``: one learner episode per assistant turn, on the agent's window (:func:`turn_windows`).

    Returns:
        The tokenized episodes and counts ``{"read", "kept", "too_long", "errored", "failed"}``, the problems of
        the sampled (non-expert) episodes by outcome (:func:`agentrl.problem_outcomes.outcome_counts`), with
        ``cap_positives`` ``{"positives", "positives_kept", "positives_dropped"}``, and with ``history``
        ``"windows"`` (learner episodes made; ``kept`` and ``too_long`` count windows).

    Raises:
        DataError: an episode cannot be tokenized, or a DAgger episode or a renamed copy without ``allow_labels``.
    """

    if isinstance(paths, str | Path):
        paths = [p for p in str(paths).split(",") if p]
    out: list[TokenizedEpisode] = []
    sampled: list[bool] = []  # per kept episode: a rollout (not an expert demonstration)
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
            where = f"{path}: episode {number} ({episode.episode_id})"
            if not allow_labels:
                _refuse_sft_only(episode, where)
            chats = [episode] if history is None else turn_windows(episode, history)
            if history is not None:
                counts["windows"] = counts.get("windows", 0) + len(chats)
            for chat in chats:
                item = tokenize_episode(
                    chat, tokenizer, level=level, step_delimiters=step_delimiters, reward_map=reward_map,
                    where=where, observations=observations, last_turn_only=history is not None,
                )  # fmt: skip
                if len(item.input_ids) > max_length:
                    counts["too_long"] += 1
                    continue
                out.append(item)
                sampled.append(episode.policy != "expert")
    counts.update(problem_outcomes.outcome_counts([e for e, s in zip(out, sampled, strict=True) if s]))
    if cap_positives:
        keep, capped = problem_outcomes.cap_positives(out, seed)
        out = [out[i] for i in keep]
        counts.update(capped)
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

