"""Paired comparison of two methods on the same tasks: the difference in success with a bootstrap interval.

Two methods evaluated on the same tasks (and seeds) are compared on their *pairs*: unit ``(seed, task)`` has
outcome ``a`` under one method and ``b`` under the other. The estimate is the mean of ``a - b`` over the units;
its 95% interval comes from resampling units with replacement (the paired bootstrap: a task that is hard for
both methods moves both, so the interval is much narrower than two independent Wilson intervals would suggest).
The discordant counts (units only ``a`` solved, only ``b`` solved) are reported beside it: with 0/1 outcomes
the difference is exactly ``(a_only - b_only) / n``.

Pure functions over ``{unit: outcome}`` dicts; :func:`outcomes` reads them from trajectory files.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentrl.errors import AgentRLError
from agentrl.trajectory import iter_episodes


class PairedError(AgentRLError, ValueError):
    """Two outcome sets cannot be paired: they have no unit in common."""


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` over the paired units: the mean difference, its bootstrap 95% interval, the discordant counts."""

    units: int
    a_rate: float
    b_rate: float
    delta: float
    ci95: tuple[float, float]
    p_not_better: float  # share of bootstrap resamples with delta <= 0
    a_only: int
    b_only: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(a: Mapping[Hashable, float], b: Mapping[Hashable, float], resamples: int = 10_000,
                     seed: int = 0) -> PairedComparison:
    """Compares ``a`` and ``b`` on the units both hold (the others are dropped: an unfinished run is not a failure).

    Raises:
        PairedError: no unit in common.
    """
    units = sorted(set(a) & set(b), key=repr)
    if not units:
        raise PairedError("paired comparison: the two methods share no (seed, task) unit")
    x = np.array([float(a[u]) for u in units])
    y = np.array([float(b[u]) for u in units])
    diff = x - y
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(units), size=(resamples, len(units)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return PairedComparison(units=len(units), a_rate=float(x.mean()), b_rate=float(y.mean()),
                            delta=float(diff.mean()), ci95=(float(low), float(high)),
                            p_not_better=float((means <= 0).mean()),
                            a_only=int(((x > 0.5) & (y <= 0.5)).sum()), b_only=int(((y > 0.5) & (x <= 0.5)).sum()))


def outcomes(paths: Mapping[Any, Path]) -> dict[tuple[Any, str], float]:
    """``{(run key, episode id): success}`` of the trajectory files ``{run key (e.g. the seed): path}``.

    A missing file contributes nothing (its seed is still running)."""
    found: dict[tuple[Any, str], float] = {}
    for key, path in paths.items():
        if Path(path).exists():
            for ep in iter_episodes(path):
                found[(key, ep.episode_id)] = float(bool(ep.success))
    return found
