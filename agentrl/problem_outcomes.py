"""Outcomes per problem in a learner's data: how many problems are mixed, and capping positives at negatives.

A critic learns to rank the *steps* of one problem only from problems whose samples end both ways: a problem
whose samples all succeed (or all fail) teaches it that problem's level, not which step made the difference.
:func:`outcome_counts` counts such problems among the rollouts (episodes grouped by ``task_id``; expert
demonstrations are left out, since they all succeed); :func:`cap_positives` keeps, per problem, at most as many
successes as it has failures (a seeded choice of which), so successes do not outweigh the failures they are
contrasted with (``agentrl learn --cap-positives``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def _by_problem(items: Sequence[Any]) -> dict[str, list[int]]:
    """Indices of ``items`` (anything with ``task_id``) per problem, in first-seen order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[str(item.task_id)].append(i)
    return groups


def outcome_counts(items: Sequence[Any]) -> dict[str, int]:
    """Problems among ``items`` (anything with ``task_id`` and ``success``) by the outcomes of their samples.

    Returns:
        ``{"problems", "mixed_problems" (a success and a failure), "all_success_problems",
        "all_failure_problems"}``.
    """
    counts = {"problems": 0, "mixed_problems": 0, "all_success_problems": 0, "all_failure_problems": 0}
    for indices in _by_problem(items).values():
        wins = sum(bool(items[i].success) for i in indices)
        counts["problems"] += 1
        if 0 < wins < len(indices):
            counts["mixed_problems"] += 1
        elif wins:
            counts["all_success_problems"] += 1
        else:
            counts["all_failure_problems"] += 1
    return counts


def cap_positives(items: Sequence[Any], seed: int = 0) -> tuple[list[int], dict[str, int]]:
    """Which of ``items`` to keep when each problem keeps at most as many successes as it has failures.

    Every failure is kept; of a problem's ``p`` successes and ``n`` failures, ``min(p, n)`` successes are kept,
    chosen by ``random.Random(seed)`` (problems visited in first-seen order), so a problem without a failure keeps
    none.

    Returns:
        The kept indices in their original order, and ``{"positives", "positives_kept", "positives_dropped"}``.
    """
    rng = random.Random(seed)
    keep: list[int] = []
    positives = 0
    for indices in _by_problem(items).values():
        wins = [i for i in indices if items[i].success]
        losses = [i for i in indices if not items[i].success]
        positives += len(wins)
        keep += losses + (rng.sample(wins, len(losses)) if len(wins) > len(losses) else wins)
    kept = sorted(keep)
    dropped = len(items) - len(kept)
    return kept, {"positives": positives, "positives_kept": positives - dropped, "positives_dropped": dropped}


def describe_outcomes(counts: dict[str, Any]) -> str:
    """One line for the learner's log: how many problems of the rollouts are mixed."""
    total = counts.get("problems", 0)
    if not total:
        return "rollouts: no sampled episodes (only demonstrations): no problem has both outcomes"
    mixed = counts.get("mixed_problems", 0)
    return (f"rollouts: {mixed} of {total} problems ({100 * mixed / total:.1f}%) are mixed (both a success and a "
            f"failure); {counts.get('all_success_problems', 0)} all successes, "
            f"{counts.get('all_failure_problems', 0)} all failures")


def describe_cap(counts: dict[str, Any]) -> str:
    """One line for the learner's log: what ``--cap-positives`` kept and dropped."""
    return (f"cap-positives: kept {counts.get('positives_kept', 0)} of {counts.get('positives', 0)} successes "
            f"(dropped {counts.get('positives_dropped', 0)}: at most one success per failure of the same problem)")
