"""Aggregation over seeds: the arithmetic by hand, the table cells, and the "Nothing happens." share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrl.recipes import RecipeConfig
from agentrl.recipes.config import EvalSpec, method_names
from agentrl.recipes.summary import aggregate, bar, markdown, mean_std, nothing_happens, write_summary
from agentrl.trajectory import TrajectoryWriter
from agentrl.types import Episode


def _results(rate: float, n: int, by_type: dict[str, float]) -> dict:
    return {"method": "m", "success_rate": rate, "successes": round(rate * n), "episodes": n, "ci95": [0.1, 0.9],
            "mean_steps": 4.0, "errors": 0,
            "by_task_type": {t: {"success_rate": r, "n": 1, "successes": 0, "ci95": [0, 1], "mean_steps": 1.0}
                             for t, r in by_type.items()}}  # fmt: skip


def _recipe(tmp_path: Path, **kw) -> RecipeConfig:
    base = {"env": "math", "dataset": "chain-sum", "out": str(tmp_path), "seeds": [0, 1], "eval_on": ["chain-sum"],
            "evaluations": {"SFT": EvalSpec(policy="sft")}}  # fmt: skip
    return RecipeConfig(**{**base, **kw})


def test_mean_and_std_over_seeds_by_hand(tmp_path: Path) -> None:
    """Seeds 0 and 1 solve 2/4 and 4/4: mean (0.5 + 1.0) / 2 = 0.75; sample std sqrt(2 * 0.25**2 / 1) = 0.3536.

    Task type a: 0.0 and 1.0 -> 0.5 ± 0.7071; type b only in seed 0 (1.0), seed 1 counts 0.0 -> 0.5 ± 0.7071.
    """
    cfg = _recipe(tmp_path)
    for seed, (rate, types) in enumerate([(0.5, {"a": 0.0, "b": 1.0}), (1.0, {"a": 1.0})]):
        path = tmp_path / f"seed{seed}" / "results" / "chain-sum" / "SFT.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_results(rate, 4, types)))
    row = aggregate(cfg)["chain-sum"]["SFT"]
    assert row["mean"] == pytest.approx(0.75) and row["std"] == pytest.approx(0.353553, abs=1e-6)
    assert row["seeds"] == 2 and row["successes"] == 6 and row["nothing_happens"] is None
    assert row["by_task_type"]["a"] == pytest.approx({"mean": 0.5, "std": 0.707107}, abs=1e-6)
    assert row["by_task_type"]["b"]["mean"] == pytest.approx(0.5)
    text = markdown(aggregate(cfg))
    assert "| SFT | 75.0 ± 35.4 (2 seeds) |" in text and "success % by task type" in text
    summary = write_summary(cfg)
    assert summary["results"]["chain-sum"]["SFT"]["seeds"] == 2 and (tmp_path / "summary.md").is_file()


def test_one_seed_shows_counts_and_the_wilson_interval(tmp_path: Path) -> None:
    cfg = _recipe(tmp_path, seeds=[3])
    path = tmp_path / "seed3" / "results" / "chain-sum" / "SFT.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_results(0.25, 4, {"a": 0.25})))
    assert "| SFT | 1/4 = 25.0% [10.0, 90.0] |" in markdown(aggregate(cfg))
    assert mean_std([0.3]) == (0.3, 0.0)
    # the plot's error bar is that interval, not a zero std: 25% with 15 points below and 65 above
    mean, (below, above) = bar(aggregate(cfg)["chain-sum"]["SFT"])
    assert (mean, below, above) == pytest.approx((25.0, 15.0, 65.0))
    assert bar({"mean": 0.75, "std": 0.25, "seeds": 2}) == (75.0, 25.0)


def test_method_names_expand_widths_and_rounds(tmp_path: Path) -> None:
    cfg = _recipe(tmp_path, rounds=2, next_policy="OREO", learners={"OREO": {"algo": "oreo"}},
                  evaluations={"SFT": EvalSpec(policy="sft"), "OREO": EvalSpec(policy="OREO"),
                               "OREO+best-of-{k}": EvalSpec(policy="OREO", critic="OREO", best_of=[3, 5])})
    assert method_names(cfg) == ["SFT", "OREO round 1", "OREO+best-of-3 round 1", "OREO+best-of-5 round 1",
                                 "OREO round 2", "OREO+best-of-3 round 2", "OREO+best-of-5 round 2"]


def test_best_of_n_and_seven_beams_expand(tmp_path: Path) -> None:
    from agentrl.recipes.config import expand

    cfg = _recipe(tmp_path, learners={"OREO": {"algo": "oreo"}},
                  evaluations={"OREO beam B={b}": EvalSpec(policy="OREO", critic="OREO", beam=[5, 7]),
                               "OREO best-of-N={n}": EvalSpec(policy="OREO", critic="OREO", best_of_n=[3, 5])})
    assert method_names(cfg) == ["OREO beam B=5", "OREO beam B=7", "OREO best-of-N=3", "OREO best-of-N=5"]
    assert expand("X={n}", cfg.evaluations["OREO best-of-N={n}"]) == [("X=3", {"best_of_n": 3}), ("X=5", {"best_of_n": 5})]


def test_nothing_happens_counts_the_engine_answers(tmp_path: Path) -> None:
    def episode(eid: str, answers: list[str]) -> Episode:
        messages = [{"role": "system", "content": "rules"}, {"role": "user", "content": "Nothing happens. (task)"}]
        for answer in answers:
            messages += [{"role": "assistant", "content": "Action: go to desk 1"}, {"role": "user", "content": answer}]
        return Episode(episode_id=eid, task_id=eid, env_id="alfworld", split="valid_unseen", task_type="t",
                       policy="react", success=False, reward=0.0, steps=[], messages=messages)  # fmt: skip

    path = tmp_path / "SFT.jsonl"
    with TrajectoryWriter(path) as writer:
        writer.write(episode("a", ["Nothing happens.", "You arrive at desk 1.", "Nothing happens."]))
        writer.write(episode("b", ["You arrive at bed 1."]))
    assert nothing_happens(path) == 0.5  # 2 of 4 commands; the first observation is not an answer
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert nothing_happens(empty) is None and nothing_happens(tmp_path / "missing.jsonl") is None


def test_compare_pairs_seed_and_task_across_methods(tmp_path: Path) -> None:
    """Seed 0: OREO solves t0, t1; SFT t1. Seed 1: OREO t0; SFT t0, t2. Pairs (seed, task): 6; only OREO 1
    (s0 t0), only SFT 1 (s1 t2) -> A - B = 0 points."""
    cfg = _recipe(tmp_path, evaluations={"SFT": EvalSpec(policy="sft"), "OREO": EvalSpec(policy="sft")},
                  compare=["OREO vs SFT"])
    solved = {(0, "OREO"): {"t0", "t1"}, (0, "SFT"): {"t1"}, (1, "OREO"): {"t0"}, (1, "SFT"): {"t0", "t2"}}
    for (seed, method), wins in solved.items():
        folder = tmp_path / f"seed{seed}" / "results" / "chain-sum"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{method}.json").write_text(json.dumps(_results(len(wins) / 3, 3, {"a": 0.0})))
        with TrajectoryWriter(folder / f"{method}.jsonl") as writer:
            for task in ("t0", "t1", "t2"):
                writer.write(Episode(episode_id=f"{task}/s0", task_id=task, env_id="math", split="test", task_type="a",
                                     policy="react", success=task in wins, reward=float(task in wins), steps=[],
                                     messages=[]))  # fmt: skip
    summary = write_summary(cfg)
    (row,) = summary["paired"]["chain-sum"]
    assert (row["a"], row["b"], row["units"], row["a_only"], row["b_only"]) == ("OREO", "SFT", 6, 1, 1)
    assert row["a_rate"] == pytest.approx(0.5) and row["delta"] == 0.0
    assert "| OREO vs SFT | 6 | 50.0% | 50.0% | +0.0 |" in (tmp_path / "summary.md").read_text()


def test_compare_names_an_evaluated_method(tmp_path: Path) -> None:
    from agentrl.config import ConfigError

    with pytest.raises(ConfigError, match="'DPO' is not an evaluated method"):
        _recipe(tmp_path, compare=["DPO vs SFT"])
    with pytest.raises(ConfigError, match="must read `A vs B`"):
        _recipe(tmp_path, compare=["SFT,SFT"])
