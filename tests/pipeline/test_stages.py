"""Pipeline stages: a rollout cut short by a kill is continued (not skipped) when the pipeline is rerun."""

from __future__ import annotations

import json
from pathlib import Path

from agentrl import pipeline
from agentrl.cli import rollout as rollout_cmd
from agentrl.pipeline import Stages

PROBLEMS = [
    {"question": "Tom has 3 apples and buys 5 more. How many apples?", "answer": "3 + 5 = 8.\n#### 8"},
    {"question": "Ann has 4 pens and loses 1. How many are left?", "answer": "4 - 1 = 3.\n#### 3"},
    {"question": "A box holds 2 rows of 6 eggs. How many eggs?", "answer": "2 * 6 = 12.\n#### 12"},
]


def test_partial_rollout_is_continued_then_marked(tmp_path: Path) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    out = tmp_path / "expert.jsonl"
    kwargs = {"env": "math", "dataset": f"jsonl:{data}", "split": "test", "policy": "expert", "out": str(out),
              "progress": False}  # fmt: skip
    # a run killed after one episode: the file exists, but the stage is not finished
    assert rollout_cmd.run(rollout_cmd.Config(**kwargs, episodes=1)) == 0
    assert len(out.read_text().splitlines()) == 1 and not pipeline.finished(out).exists()

    stages = Stages(tmp_path)
    stages.run("expert", pipeline.finished(out), pipeline.rollout, **kwargs)
    ids = [json.loads(line)["episode_id"] for line in out.read_text().splitlines()]
    assert len(ids) == 3 == len(set(ids)) and pipeline.finished(out).exists()
    stages.run("expert", pipeline.finished(out), pipeline.rollout, **kwargs)
    assert stages.times["expert"] == 0.0 and len(out.read_text().splitlines()) == 3


def test_partial_evaluation_is_continued(tmp_path: Path) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    episodes = tmp_path / "eval.jsonl"
    kwargs = {"env": "math", "dataset": f"jsonl:{data}", "split": "test", "policy": "expert",
              "trajectories": str(episodes), "progress": False}  # fmt: skip
    # an evaluation killed after one episode left its trajectories but no results file
    assert rollout_cmd.run(rollout_cmd.Config(env="math", dataset=f"jsonl:{data}", split="test", policy="expert",
                                              out=str(episodes), episodes=1, progress=False)) == 0  # fmt: skip
    results = pipeline.evaluate(**kwargs, out=str(tmp_path / "results.json"))
    assert results["episodes"] == 3 and results["success_rate"] == 1.0
    assert len(episodes.read_text().splitlines()) == 3


def test_only_runs_the_selected_stages(tmp_path: Path) -> None:
    ran = []
    stages = Stages(tmp_path, only=["*: RS", "*: evaluate SFT *"])
    for name in ("seed 2: OREO", "seed 2: RS", "seed 2: evaluate SFT on valid_seen", "seed 2: evaluate OREO on x"):
        stages.run(name, tmp_path / name, lambda name=name: ran.append(name))
    assert ran == ["seed 2: RS", "seed 2: evaluate SFT on valid_seen"]
    assert set(stages.times) == set(ran)  # the others neither ran nor count as done
    everything = []
    Stages(tmp_path).run("seed 2: OREO", tmp_path / "oreo", lambda: everything.append(1))
    assert everything == [1]
