"""What a critic knows: its values after actions, and how well they rank outcomes and actions.

The metrics of ``agentrl critic-report`` (:mod:`agentrl.critic_probe` gathers their inputs):

* **within-problem (sibling) AUC** (:func:`sibling_auc`): at a shared prefix of one problem, sibling steps (the
  same prefix, different next steps) are labelled by the Monte-Carlo success rate of what follows each one; over
  every pair of siblings whose rates differ, the share where the critic values the better sibling higher.
* **pooled AUC** (:func:`pooled_auc`): ``V`` after step ``k`` as a predictor of the episode's success, over every
  problem (per ``k``, and over every step of every episode).
* **calibration** (:func:`calibration`): ``V`` after a prefix against the Monte-Carlo success rate of that same
  prefix, as a binned reliability table and its expected calibration error.

OREO's ``V`` estimates the *soft* (KL-regularised) value, ``E[R] - beta * KL(pi || pi_ref)`` along the rest of the
episode, not the success probability itself: with a KL term the calibration gap is measured, not corrected. At
``beta -> 0`` (or ``pi = pi_ref``) and 0/1 rewards the two coincide.

Every value here is read where :mod:`agentrl.data` says the critic is read and trained, the afterstate of an
assistant turn (:func:`agentrl.data.encode_after_action`), through the same scorer best-of-K and beam search use
(:class:`agentrl.policies.scoring.CriticScorer`) or the same positions the learner trains
(``TokenizedEpisode.after_positions``). AUCs are Mann-Whitney: the probability that a random positive is valued
above a random negative, ties counting half (0.5: no better than chance).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # agentrl.data pulls in torch; `agentrl --help` reaches this module through the CLI
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


def afterstate_values(model: Any, episodes: Sequence[TokenizedEpisode], device: str = "cpu") -> list[list[float]]:
    """``V`` after each assistant turn of each episode, at the positions the learner trains as afterstates.

    Args:
        model: a critic with ``values(input_ids [B, L], attention_mask) -> [B, L]`` (``agentrl.critic.ValueModel``).
        episodes: tokenized episodes (:func:`agentrl.training_data.load_tokenized`).
        device: where ``model`` lives.

    Returns:
        ``out[e][j]``: V of episode ``e``'s afterstate ``j``.
    """
    import torch

    out = []
    with torch.no_grad():
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


# ---- the critic report: siblings, episodes, prefixes -------------------------------------------------------


@dataclass
class Sibling:
    """One next step at a shared prefix: the critic's ``V`` after it and the outcomes of what followed it.

    Attributes:
        action: the step.
        value: ``V`` of the afterstate of the step (the mean over the episodes through it, when read from a file).
        successes: successful continuations (or episodes) through the step.
        trials: continuations (or episodes) through the step.
    """

    action: str
    value: float
    successes: int
    trials: int

    @property
    def success_rate(self) -> float:
        """The Monte-Carlo success rate of the prefix that ends with this step."""
        return self.successes / self.trials


@dataclass
class SiblingSet:
    """The siblings of one shared prefix of one problem: candidate steps number ``depth`` (1-based)."""

    task_id: str
    depth: int
    siblings: list[Sibling]


@dataclass
class ScoredEpisode:
    """An episode's steps, ``V`` after each step, and its outcome."""

    task_id: str
    actions: list[str]
    values: list[float]
    success: bool
    meta: dict[str, Any] = field(default_factory=dict)


def sibling_pairs(siblings: Sequence[Sibling]) -> tuple[float, int]:
    """``(wins, pairs)`` over the pairs of ``siblings`` whose success rates differ.

    A pair is won when the sibling with the higher success rate has the higher ``V`` (half a win on equal ``V``);
    pairs with equal rates carry no label and are left out. Rates are compared exactly (cross-multiplied counts).
    """
    wins, pairs = 0.0, 0
    for a, b in itertools.combinations(siblings, 2):
        better = a.successes * b.trials - b.successes * a.trials
        if better == 0:
            continue
        hi, lo = (a, b) if better > 0 else (b, a)
        wins += (hi.value > lo.value) + 0.5 * (hi.value == lo.value)
        pairs += 1
    return wins, pairs


def sibling_auc(sets: Sequence[SiblingSet]) -> dict[str, Any]:
    """Within-problem AUC over the labelled sibling pairs of every set, overall and by depth.

    Returns:
        ``{"auc", "pairs", "sets", "informative_sets", "by_depth": [{"k", "auc", "pairs", "sets",
        "informative_sets"}]}``; an AUC is NaN where there is no labelled pair (``informative_sets``: sets with one).
    """

    def summary(group: Sequence[SiblingSet]) -> dict[str, Any]:
        counts = [sibling_pairs(s.siblings) for s in group]
        wins, pairs = sum(w for w, _ in counts), sum(n for _, n in counts)
        return {"auc": wins / pairs if pairs else math.nan, "pairs": pairs, "sets": len(group),
                "informative_sets": sum(n > 0 for _, n in counts)}  # fmt: skip

    depths = sorted({s.depth for s in sets})
    by_depth = [{"k": k, **summary([s for s in sets if s.depth == k])} for k in depths]
    return {**summary(sets), "by_depth": by_depth}


def pooled_auc(episodes: Sequence[ScoredEpisode]) -> dict[str, Any]:
    """``V`` after step ``k`` as a predictor of the episode's success, over every problem.

    Returns:
        ``{"overall", "by_step"}``: ``overall`` pools every step of every episode (each ``V`` labelled by its
        episode's outcome); ``by_step`` holds :func:`outcome_auc_by_turn`'s rows for k = 1..the longest episode
        (``pooled``, and ``within``: a success against a failure of the same problem at step k).
    """
    pos = [v for e in episodes if e.success for v in e.values]
    neg = [v for e in episodes if not e.success for v in e.values]
    turns = max((len(e.values) for e in episodes), default=0)
    rows = outcome_auc_by_turn([e.values for e in episodes], [e.success for e in episodes],
                               [e.task_id for e in episodes], turns)  # fmt: skip
    return {"overall": auc(pos, neg), "by_step": rows}


def prefix_siblings(episodes: Sequence[ScoredEpisode]) -> tuple[list[SiblingSet], list[Sibling]]:
    """Groups the episodes of each problem by shared step prefixes.

    Every prefix (the first ``k`` steps, compared case- and whitespace-insensitively) is a node; its ``value`` is
    the mean ``V`` after step ``k`` over the episodes through it and its label their success rate. The children
    of a node are siblings; nodes with at least two children give a :class:`SiblingSet`.

    Returns:
        The sibling sets (by problem, then prefix, in first-seen order) and every node (for calibration).
    """
    nodes: dict[tuple[str, tuple[str, ...]], list[Any]] = {}  # (task, prefix) -> [values, successes, trials]
    for e in episodes:
        prefix: tuple[str, ...] = ()
        for action, value in zip(e.actions, e.values, strict=False):
            prefix = (*prefix, " ".join(action.strip().lower().split()))
            node = nodes.setdefault((e.task_id, prefix), [[], 0, 0, action])
            node[0].append(value)
            node[1] += int(e.success)
            node[2] += 1
    made = {key: Sibling(n[3], sum(n[0]) / len(n[0]), n[1], n[2]) for key, n in nodes.items()}
    children: dict[tuple[str, tuple[str, ...]], list[Sibling]] = {}
    for (task, prefix), sibling in made.items():
        children.setdefault((task, prefix[:-1]), []).append(sibling)
    sets = [SiblingSet(task, len(parent) + 1, group) for (task, parent), group in children.items() if len(group) > 1]
    return sets, list(made.values())


def calibration(prefixes: Sequence[Sibling], bins: int = 10) -> dict[str, Any]:
    """Reliability of ``V`` against the Monte-Carlo success rate of the same prefix.

    Bin ``b`` of ``bins`` equal-width bins covers ``V`` in ``[b/bins, (b+1)/bins)`` (the last includes 1; a ``V``
    below 0 or above 1 joins the first or last bin, whose ``mean_value`` then shows it). Each prefix counts once:

        ECE = sum_b (n_b / N) * |mean V_b - mean success_b|

    Returns:
        ``{"bins": [{"lo", "hi", "count", "mean_value", "mean_success"}], "ece", "prefixes"}``; means of an
        empty bin are NaN, and ``ece`` is NaN without prefixes.
    """
    if bins < 1:
        raise ValueError(f"calibration needs bins >= 1, got {bins}")
    members: list[list[Sibling]] = [[] for _ in range(bins)]
    for p in prefixes:
        members[min(bins - 1, max(0, math.floor(p.value * bins)))].append(p)
    rows, gap = [], 0.0
    for b, group in enumerate(members):
        mean_value = sum(p.value for p in group) / len(group) if group else math.nan
        mean_success = sum(p.success_rate for p in group) / len(group) if group else math.nan
        if group:
            gap += len(group) * abs(mean_value - mean_success)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "count": len(group), "mean_value": mean_value,
                     "mean_success": mean_success})  # fmt: skip
    return {"bins": rows, "ece": gap / len(prefixes) if prefixes else math.nan, "prefixes": len(prefixes)}


def build_report(
    sets: Sequence[SiblingSet], episodes: Sequence[ScoredEpisode], prefixes: Sequence[Sibling], bins: int = 10,
    **header: Any,
) -> dict[str, Any]:
    """The report mapping (``header`` first: mode, config, ...) with every metric of this module; NaN -> None.

    Besides the metrics: ``mixed_problems`` (problems whose episodes have both outcomes: the only ones where a
    within-problem comparison exists) and ``sibling_sets`` (every set: task, depth, each sibling's action, ``V``,
    successes and trials) for a closer look.
    """
    outcomes: dict[str, set[bool]] = {}
    for e in episodes:
        outcomes.setdefault(e.task_id, set()).add(bool(e.success))
    report = {
        **header,
        "problems": len(outcomes),
        "mixed_problems": sum(len(seen) == 2 for seen in outcomes.values()),
        "episodes": len(episodes),
        "success_rate": sum(e.success for e in episodes) / len(episodes) if episodes else math.nan,
        "sibling_auc": sibling_auc(sets),
        "pooled_auc": pooled_auc(episodes),
        "calibration": calibration(prefixes, bins),
        "value_note": "OREO's V estimates the soft (KL-regularised) value E[R] - beta * KL, not P(success): "
                      "calibration is reported as measured",
        "sibling_sets": [{"task_id": s.task_id, "depth": s.depth,
                          "siblings": [{"action": x.action, "value": x.value, "successes": x.successes,
                                        "trials": x.trials} for x in s.siblings]} for s in sets],
    }  # fmt: skip
    return _finite(report)


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def report_tables(report: dict[str, Any]) -> list[Any]:
    """Rich tables of a report: the summary, the AUCs by step, the reliability bins."""
    from rich.table import Table

    def num(x: Any, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    sib, pooled, cal = report["sibling_auc"], report["pooled_auc"], report["calibration"]
    summary = Table(title=f"critic report ({report.get('mode', '?')}): {report['problems']} problems "
                    f"({report['mixed_problems']} with both outcomes), {report['episodes']} episodes, success "
                    f"{num(report['success_rate'], 2)}")  # fmt: skip
    for column in ("metric", "value", "over"):
        summary.add_column(column, justify="left" if column == "metric" else "right")
    summary.add_row("within-problem (sibling) AUC", num(sib["auc"]),
                    f"{sib['pairs']} pairs in {sib['informative_sets']}/{sib['sets']} sibling sets")
    summary.add_row("pooled AUC (every step)", num(pooled["overall"]), f"{report['episodes']} episodes")
    summary.add_row("expected calibration error", num(cal["ece"]), f"{cal['prefixes']} prefixes")
    by_step = Table(title="AUC by step k (V after step k)")
    for column in ("k", "sibling AUC", "sibling pairs", "pooled AUC", "within-problem outcome AUC", "pairs"):
        by_step.add_column(column, justify="right")
    siblings = {row["k"]: row for row in sib["by_depth"]}
    for row in pooled["by_step"]:
        s = siblings.get(row["k"], {})
        by_step.add_row(str(row["k"]), num(s.get("auc")), str(s.get("pairs", 0)), num(row["pooled"]),
                        num(row["within"]), str(row["pairs"]))
    reliability = Table(title="calibration: V against the Monte-Carlo success rate of the prefix")
    for column in ("V bin", "prefixes", "mean V", "mean success"):
        reliability.add_column(column, justify="right")
    for row in cal["bins"]:
        if row["count"]:
            reliability.add_row(f"[{row['lo']:.2f}, {row['hi']:.2f})", str(row["count"]), num(row["mean_value"]),
                                num(row["mean_success"]))
    return [summary, by_step, reliability]
