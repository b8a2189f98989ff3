"""Success statistics: Wilson interval by hand, per-task-type counts, results.json round trip, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from agentrl.cli import main
from agentrl.evaluation import (
    ResultsError,
    compare_table,
    load_results,
    results_table,
    summarize,
    wilson_interval,
    write_results,
)
from agentrl.types import Episode, Step

Z2 = 1.959963984540054**2


def _ep(task_type: str, success: bool, steps: int, i: int = 0, error: str | None = None) -> Episode:
    return Episode(
        episode_id=f"e/{task_type}/{i}", task_id=f"{task_type}-{i}", env_id="agentrl/ALFWorld-v0", split="valid_unseen",
        task_type=task_type, policy="expert", success=success, reward=float(success),
        steps=[Step(observation="o", action="a")] * steps, error=error,
    )


def test_wilson_by_hand() -> None:
    """5/10: p = .5, centre = (.5 + z²/20)/(1 + z²/10) = .5; half = z/(1 + z²/10)·sqrt(.025 + z²/400) = .26341.

    6/6: p = 1, lo = n/(n + z²) = 6/9.8415 = .60966, hi = 1.  0/10: lo = 0, hi = z²/(10 + z²) = .27753.
    """
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.5 - 0.26341, abs=1e-4) and hi == pytest.approx(0.5 + 0.26341, abs=1e-4)
    lo, hi = wilson_interval(6, 6)
    assert lo == pytest.approx(6 / (6 + Z2), abs=1e-9) and hi == 1.0
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(Z2 / (10 + Z2), abs=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes=3, n=2"):
        wilson_interval(3, 2)


def test_summarize_counts_by_task_type() -> None:
    episodes = [_ep("pick", True, 4, 0), _ep("pick", False, 40, 1), _ep("heat", True, 10, 2),
                _ep("heat", False, 7, 3, error="env hung")]
    r = summarize(episodes, config={"episodes": 4}, method="expert")
    assert r["success_rate"] == 0.5 and r["episodes"] == 4 and r["successes"] == 2 and r["errors"] == 1
    assert r["mean_steps"] == pytest.approx((4 + 40 + 10 + 7) / 4)
    assert r["ci95"] == pytest.approx(list(wilson_interval(2, 4)), abs=1e-6)
    assert r["by_task_type"]["pick"] == {"success_rate": 0.5, "successes": 1, "n": 2,
                                         "ci95": pytest.approx(list(wilson_interval(1, 2)), abs=1e-6),
                                         "mean_steps": 22.0}
    assert sum(s["n"] for s in r["by_task_type"].values()) == 4
    assert r["config"] == {"episodes": 4}


def test_results_round_trip_and_tables(tmp_path: Path) -> None:
    a = summarize([_ep("pick", True, 4), _ep("heat", False, 9, 1)], method="greedy")
    b = summarize([_ep("pick", True, 3), _ep("heat", True, 5, 1), _ep("cool", True, 2, 2)], method="best-of-3")
    pa, pb = write_results(tmp_path / "a.json", a), write_results(tmp_path / "b.json", b)
    assert load_results(pa) == json.loads(json.dumps(a))
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(results_table(load_results(pa)))
    console.print(compare_table([load_results(pa), load_results(pb)]))
    text = console.export_text()
    assert "greedy" in text and "best-of-3" in text
    assert "50.0 (n=2)" in text and "100.0 (n=3)" in text
    cool_row = next(line for line in text.splitlines() if "cool" in line and "n=1" in line)
    assert "-" in cool_row.split("cool", 1)[1]  # greedy never saw a `cool` task


def test_load_results_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such results file"):
        load_results(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"success_rate": 1.0}')
    with pytest.raises(ResultsError, match="bad.json: missing key.*episodes"):
        load_results(bad)
    bad.write_text("{oops")
    with pytest.raises(ResultsError, match="bad.json:1: invalid JSON"):
        load_results(bad)


def test_cli_compare(tmp_path: Path, capsys) -> None:
    a = write_results(tmp_path / "a.json", summarize([_ep("pick", True, 4)], method="sft"))
    b = write_results(tmp_path / "b.json", summarize([_ep("pick", False, 4)], method="oreo"))
    assert main(["eval", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "sft" in out and "oreo" in out and "100.0" in out
    assert main(["eval", "--compare", str(a), str(tmp_path / "missing.json")]) == 2
