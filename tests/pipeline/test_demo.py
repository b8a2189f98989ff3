"""`agentrl demo` end to end on a micro config: every stage, the before/after table, the learner's max_length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("alfworld")


def test_demo_micro_config_runs_every_stage(tmp_path: Path, capsys) -> None:
    from agentrl.cli import main

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--train-tasks", "6", "--eval-tasks", "1", "--workers", "1",
            "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--vocab-size", "400", "--max-steps", "3",
            "--max-new-tokens", "12", "--num-envs", "2", "--batch-size", "4", "--sft-epochs", "1",
            "--samples-per-task", "1", "--best-of", "2", "--max-length", "3500", "--no-live",
            "--thoughts", "off", "--tokenizer", "word"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "OREO+best-of-2" in printed and "demo finished" in printed
    for method in ("SFT", "OREO", "OREO+best-of-2"):
        assert json.loads((out / "results" / f"{method}.json").read_text())["episodes"] == 1
    for stage in ("sft", "oreo"):  # the demo's own episode-length cap reaches the learner (no demo is skipped)
        assert json.loads((out / stage / "learn_config.json").read_text())["max_length"] == 3500
    # thought-free word-level demo: the demonstrations' format travels to every model and evaluation
    from agentrl.agent_format import load
    from agentrl.trajectory import read_episodes

    assert all(load(out / folder).thoughts is False for folder in ("base-model", "sft/policy", "oreo/policy"))
    evaluated = read_episodes(out / "results" / "OREO.jsonl")[0]
    assert evaluated.meta["agent"]["thoughts"] is False and "Think" not in evaluated.messages[0]["content"]
    assert main(argv) == 0  # a rerun skips every stage
    assert "took" not in capsys.readouterr().out
