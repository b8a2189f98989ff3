"""Recipe stages: a stage cut short by a kill is continued (not skipped); stages record their own wall time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrl.evaluate import EvalConfig
from agentrl.recipes.stages import StageError, Stages, finished, run_evaluation, run_rollout
from agentrl.rollout import RolloutConfig, rollout

PROBLEMS = [
    {"question": "Tom has 3 apples and buys 5 more. How many apples?", "answer": "3 + 5 = 8.\n#### 8"},
    {"question": "Ann has 4 pens and loses 1. How many are left?", "answer": "4 - 1 = 3.\n#### 3"},
    {"question": "A box holds 2 rows of 6 eggs. How many eggs?", "answer": "2 * 6 = 12.\n#### 12"},
]


def _problems(tmp_path: Path) -> str:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return f"jsonl:{data}"


def test_partial_rollout_is_continued_then_marked(tmp_path: Path) -> None:
    out = tmp_path / "expert.jsonl"
    kwargs = {"env": "math", "dataset": _problems(tmp_path), "split": "test", "policy": "expert", "out": str(out),
              "progress": False}  # fmt: skip
    rollout(RolloutConfig(**kwargs, episodes=1))  # a run killed after one episode: the file has no marker
    assert len(out.read_text().splitlines()) == 1 and not finished(out).exists()
    stages = Stages(tmp_path)
    stages.run("expert", finished(out), run_rollout, RolloutConfig(**kwargs))
    ids = [json.loads(line)["episode_id"] for line in out.read_text().splitlines()]
    assert len(ids) == 3 == len(set(ids)) and finished(out).exists()
    stages.run("expert", finished(out), run_rollout, RolloutConfig(**kwargs))
    assert stages.ran == ["expert"] and len(out.read_text().splitlines()) == 3


def test_partial_evaluation_is_continued(tmp_path: Path) -> None:
    dataset = _problems(tmp_path)
    episodes = tmp_path / "eval.jsonl"
    # an evaluation killed after one episode left its trajectories but no results file
    rollout(RolloutConfig(env="math", dataset=dataset, split="test", policy="expert", out=str(episodes),
                          episodes=1, progress=False))  # fmt: skip
    cfg = EvalConfig(env="math", dataset=dataset, policy="expert", trajectories=str(episodes), progress=False,
                     out=str(tmp_path / "results.json"))  # fmt: skip
    results = run_evaluation(cfg)
    assert results["episodes"] == 3 and results["success_rate"] == 1.0
    assert len(episodes.read_text().splitlines()) == 3


def test_only_runs_the_selected_stages(tmp_path: Path) -> None:
    ran = []
    stages = Stages(tmp_path, only=["*: RS", "*: evaluate SFT *"])
    for name in ("seed 2: OREO", "seed 2: RS", "seed 2: evaluate SFT on valid_seen", "seed 2: evaluate OREO on x"):
        stages.run(name, tmp_path / name, lambda name=name: ran.append(name))
    assert ran == ["seed 2: RS", "seed 2: evaluate SFT on valid_seen"] == stages.ran
    everything = []
    Stages(tmp_path).run("seed 2: OREO", tmp_path / "oreo", lambda: everything.append(1))
    assert everything == [1]


def test_stage_times_persist_across_runs_and_failures_raise(tmp_path: Path) -> None:
    first = Stages(tmp_path)
    first.run("a", tmp_path / "a", lambda: (tmp_path / "a").touch())
    again = Stages(tmp_path)  # a later process: "a" is done, its time is still known
    again.run("a", tmp_path / "a", lambda: pytest.fail("a done stage ran again"))
    again.run("b", tmp_path / "b", lambda: None)
    assert set(json.loads((tmp_path / "times.json").read_text())) == {"a", "b"} and again.ran == ["b"]
    with pytest.raises(StageError, match="stage `c` failed with exit code 1"):
        again.run("c", tmp_path / "c", lambda: 1)
    assert "c" not in again.times
