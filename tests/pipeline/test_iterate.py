"""`agentrl iterate` end to end on a tiny math set: rollouts -> OREO -> eval per round, rerun skips done stages."""

from __future__ import annotations

import json
from pathlib import Path

from agentrl.cli import main

PROBLEMS = [
    {"question": "Tom has 3 apples and buys 5 more. How many apples does he have?",
     "answer": "Tom starts with 3 apples.\nHe buys 5 more, so 3 + 5 = 8.\n#### 8"},
    {"question": "Ann has 4 pens and loses 1. How many pens are left?",
     "answer": "Ann starts with 4 pens.\nShe loses 1, so 4 - 1 = 3.\n#### 3"},
]


def test_iterate_two_rounds_then_rerun_skips(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    out = tmp_path / "iter"
    argv = ["iterate", "--out", str(out), "--rounds", "2", "--model", str(tiny_model_dir), "--env", "math",
            "--dataset", f"jsonl:{data}", "--split", "test", "--eval-split", "test",
            "--samples-per-task", "2", "--max-steps", "3", "--num-envs", "1", "--lr", "1e-3", "--batch-size", "2"]
    assert main(argv) == 0
    for r in (1, 2):
        folder = out / f"round-{r}"
        lines = (folder / "rollouts.jsonl").read_text().splitlines()
        assert len(lines) == 4  # 2 problems x 2 samples
        assert (folder / "oreo" / "critic").is_dir() and (folder / "oreo" / "policy" / "config.json").is_file()
        results = json.loads((folder / "eval.json").read_text())
        assert results["episodes"] == 2 and 0.0 <= results["success_rate"] <= 1.0
    # round 2 trains from round 1's policy and on both rounds' rollouts
    metrics2 = [json.loads(x) for x in (out / "round-2" / "oreo" / "metrics.jsonl").read_text().splitlines()]
    assert metrics2 and all("value_loss" in m for m in metrics2)
    capsys.readouterr()
    assert main(argv) == 0  # everything done: every stage is skipped
    assert capsys.readouterr().out.count("done already") == 6


def test_iterate_oreal_carries_the_reward_model_across_rounds(tmp_path: Path, tiny_model_dir: Path) -> None:
    """OREAL rounds learn on their own rollouts (plus the demonstrations, which make the groups mixed: the tiny
    model rarely solves a problem); round 2 starts from round 1's token reward model, without warm-up."""
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    demos = tmp_path / "demos.jsonl"
    env = ["--env", "math", "--dataset", f"jsonl:{data}", "--max-steps", "3", "--num-envs", "1"]
    assert main(["rollout", *env, "--split", "test", "--policy", "expert", "--out", str(demos)]) == 0
    out = tmp_path / "iter"
    argv = ["iterate", "--algo", "oreal", "--out", str(out), "--rounds", "2", "--model", str(tiny_model_dir), *env,
            "--split", "test", "--eval-split", "test", "--samples-per-task", "2", "--lr", "1e-3",
            "--batch-size", "2", "--extra-data", str(demos), "--oreal-rm-warmup", "1"]  # fmt: skip
    assert main(argv) == 0
    first, second = (json.loads((out / f"round-{r}" / "oreal" / "learn_config.json").read_text()) for r in (1, 2))
    assert first["data"] == [str(demos), str(out / "round-1" / "rollouts.jsonl")]
    assert second["data"] == [str(demos), str(out / "round-2" / "rollouts.jsonl")]  # round 2's samples only
    assert (first["oreal_rm_warmup"], first["critic_init"]) == (1, None)
    assert (second["oreal_rm_warmup"], second["critic_init"]) == (0, str(out / "round-1" / "oreal" / "critic"))
    metrics = [json.loads(x) for x in (out / "round-2" / "oreal" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["policy_loss"] is not None  # no warm-up in round 2
    assert abs(metrics[0]["rm_loss"] - 0.693147) > 1e-4  # a fresh zero head would give ln 2 exactly
    assert json.loads((out / "round-2" / "eval.json").read_text())["method"] == "OREAL round 2"


def test_iterate_dagger_rounds_label_the_policys_states_and_train_sft_on_all_labels(tmp_path: Path,
                                                                                     tiny_model_dir: Path,
                                                                                     capsys) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    out = tmp_path / "dagger"
    argv = ["iterate", "--policy", "dagger", "--beta-schedule", "linear:4", "--out", str(out), "--rounds", "2",
            "--model", str(tiny_model_dir), "--env", "math", "--dataset", f"jsonl:{data}", "--split", "test",
            "--eval-split", "test", "--samples-per-task", "1", "--max-steps", "3", "--num-envs", "1",
            "--temperature", "0", "--lr", "1e-3", "--batch-size", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "data: {'read': 2," in printed and "data: {'read': 4," in printed  # round 2: both rounds' labels
    for r, beta in ((1, 0.75), (2, 0.5)):  # linear:4 -> 1 - r/4
        folder = out / f"round-{r}"
        rows = [json.loads(x) for x in (folder / "rollouts.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(row["policy"] == "dagger" for row in rows)
        assert all(row["meta"]["dagger"]["beta"] == beta for row in rows)
        for row in rows:  # math's expert labels while the episode follows the reference; the chat ends there
            labels = [step["label"] for step in row["steps"]]
            labelled = labels.index(None) if None in labels else len(labels)
            turns = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
            assert labelled >= 1 and turns == labels[:labelled]
        assert (folder / "sft" / "policy" / "config.json").is_file() and not (folder / "sft" / "critic").exists()
        assert json.loads((folder / "eval.json").read_text())["method"] == f"DAgger round {r}"
    log = (out / "round-2" / "sft" / "metrics.jsonl").read_text().splitlines()
    assert log and "loss" in json.loads(log[0])
