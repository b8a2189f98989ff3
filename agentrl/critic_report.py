"""What a critic knows: its values after actions, and how well they rank outcomes and actions.

Every value here is read where :mod:`agentrl.data` says the critic is read and trained, the afterstate of an
assistant turn (:func:`agentrl.data.encode_after_action`), through the same scorer best-of-K and beam search use
(:class:`agentrl.policies.scoring.CriticScorer`) or the same positions the learner trains
(``TokenizedEpisode.after_positions``). AUCs are Mann-Whitney: the probability that a random positive is valued
above a random negative, ties counting half (0.5: no better than chance).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from agentrl.data import TokenizedEpisode


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half; NaN if either side is empty."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > q) + 0.5 * (p == q) for p in positive for q in negative)
    return wins / (len(positive) * len(negative))


def grouped_auc(groups: Iterable[tuple[Sequence[float], Sequence[float]]]) -> tuple[float, int]:
    """AUC over the (positive, negative) pairs *inside* each group only, and the number of those pairs.

    A group is one state (the expert's action against the other admissible commands) or one problem (a success
    against a failure of the same question): a critic that only knows which problems are hard scores ~0.5 here
    even when its pooled AUC is high.
    """
    wins = pairs = 0.0
    for pos, neg in groups:
        n = len(pos) * len(neg)
        if n:
            wins += auc(pos, neg) * n
            pairs += n
    return (wins / pairs if pairs else float("nan")), int(pairs)


@torch.no_grad()
def afterstate_values(model: Any, episodes: Sequence[TokenizedEpisode], device: str = "cpu") -> list[list[float]]:
    """``V`` after each assistant turn of each episode, at the positions the learner trains as afterstates.

    Args:
        model: a critic with ``values(input_ids [B, L], attention_mask) -> [B, L]`` (``agentrl.critic.ValueModel``).
        episodes: tokenized episodes (:func:`agentrl.data.load_tokenized`).
        device: where ``model`` lives.

    Returns:
        ``out[e][j]``: V of episode ``e``'s afterstate ``j``.
    """
    out = []
    for e in episodes:
        ids = torch.tensor([e.input_ids], device=device)
        values = model.values(ids, torch.ones_like(ids))[0]
        out.append(values[e.after_positions].float().cpu().tolist())
    return out


def outcome_auc_by_turn(
    values: Sequence[Sequence[float]], success: Sequence[bool], groups: Sequence[str], turns: int
) -> list[dict[str, float]]:
    """For k = 1..turns: V after action k as a success predictor, pooled and within each group (task).

    Returns:
        One row per k: ``{"k", "pooled", "within", "pairs", "mean_success", "mean_failure"}``.
    """
    rows = []
    for k in range(1, turns + 1):
        by_group: dict[str, tuple[list[float], list[float]]] = {}
        for v, ok, g in zip(values, success, groups, strict=True):
            if len(v) >= k:
                by_group.setdefault(g, ([], []))[0 if ok else 1].append(v[k - 1])
        pos = [x for p, _ in by_group.values() for x in p]
        neg = [x for _, n in by_group.values() for x in n]
        within, pairs = grouped_auc(by_group.values())
        rows.append({
            "k": k, "pooled": auc(pos, neg), "within": within, "pairs": pairs,
            "mean_success": sum(pos) / len(pos) if pos else math.nan,
            "mean_failure": sum(neg) / len(neg) if neg else math.nan,
        })  # fmt: skip
    return rows
