"""The paired bootstrap: its estimate by hand, its interval against the exact sign test, and bad input."""

from __future__ import annotations

import math

import pytest

from agentrl.paired import PairedError, paired_bootstrap


def test_delta_is_the_discordant_balance() -> None:
    """10 pairs: A alone solves 3, B alone 1, both 2, neither 4 -> A - B = (3 - 1) / 10 exactly."""
    a = dict.fromkeys(range(10), 0.0) | {0: 1, 1: 1, 2: 1, 3: 1, 4: 1}
    b = dict.fromkeys(range(10), 0.0) | {3: 1, 4: 1, 5: 1}
    r = paired_bootstrap(a, b, resamples=2000)
    assert (r.units, r.a_only, r.b_only) == (10, 3, 1)
    assert (r.a_rate, r.b_rate, r.delta) == pytest.approx((0.5, 0.3, 0.2))
    assert r.ci95[0] < 0.2 < r.ci95[1]


def test_interval_matches_the_normal_width_and_pairs_beat_independent_samples() -> None:
    """400 pairs, 60 only-A and 20 only-B: the sd of the mean difference is sqrt((80/400 - 0.1**2) / 400) = 0.0218,
    so the 95% interval is about 0.1 +- 0.043; two independent Wilson intervals would be far wider."""
    a = {i: float(i < 160) for i in range(400)}  # solves 0..159
    b = {i: float(60 <= i < 180) for i in range(400)}  # solves 60..179: only-A 0..59, only-B 160..179
    r = paired_bootstrap(a, b)
    sd = math.sqrt((80 / 400 - 0.1**2) / 400)
    assert (r.a_only, r.b_only, r.delta) == (60, 20, pytest.approx(0.1))
    assert r.ci95 == pytest.approx((0.1 - 1.96 * sd, 0.1 + 1.96 * sd), abs=0.006)
    assert r.p_not_better < 0.001


def test_identical_methods_have_a_zero_interval_and_units_must_overlap() -> None:
    a = {("s0", "t1"): 1.0, ("s0", "t2"): 0.0, ("s1", "t1"): 1.0}
    r = paired_bootstrap(a, dict(a) | {("s9", "x"): 1.0})  # the unpaired unit is dropped, not counted a failure
    assert r.units == 3 and r.delta == 0.0 and r.ci95 == (0.0, 0.0) and r.p_not_better == 1.0
    with pytest.raises(PairedError, match="share no"):
        paired_bootstrap({1: 1.0}, {2: 1.0})
