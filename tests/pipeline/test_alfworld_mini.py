"""bench/alfworld_mini/run.py wired end to end on a micro config: every stage, the summary, the plot, a rerun."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("alfworld")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "alfworld_mini" / "run.py"


def _load():
    spec = importlib.util.spec_from_file_location("alfworld_mini_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_alfworld_mini_micro_protocol(tmp_path: Path, capsys) -> None:
    run = _load()
    out = tmp_path / "mini"
    argv = ["--out", str(out), "--seeds", "0", "--train-tasks", "6", "--eval-tasks", "1", "--splits", "valid_unseen",
            "--workers", "1", "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--vocab-size", "400",
            "--max-steps", "3", "--max-new-tokens", "12", "--num-envs", "2", "--batch-size", "4",
            "--sft-epochs", "1", "--rollouts-per-task", "2", "--epochs", "1", "--best-of", "1,2", "--dpo-lr", "1e-5",
            "--learners", "dqo,oreal", "--learners-with-demos", "--oreal-rm-warmup", "1"]  # fmt: skip
    assert run.main(argv) == 0
    seed = out / "seed0"
    assert len((seed / "sft-rollouts.jsonl").read_text().splitlines()) == 12  # 6 tasks x 2 rollouts
    for method in ("SFT", "RS", "DPO", "OREO", "DQO", "OREAL", "OREO+best-of-2", "DQO+best-of-2"):
        result = json.loads((seed / "results" / "valid_unseen" / f"{method}.json").read_text())
        assert result["episodes"] == 1 and result["method"] == method
    for stage in ("sft", "oreo", "rs", "dpo", "dqo", "oreal"):
        learn_config = json.loads((seed / stage / "learn_config.json").read_text())
        assert learn_config["max_length"] == 4096 and learn_config["save_every"] == 100
        assert learn_config["lr"] == (1e-5 if stage == "dpo" else 2e-3 if stage == "sft" else 2e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["splits"]["valid_unseen"]) == ["SFT", "RS", "DPO", "OREO", "DQO", "OREAL", "OREO+best-of-2",
                                                       "DQO+best-of-2"]  # fmt: skip
    oreal = json.loads((seed / "oreal" / "learn_config.json").read_text())
    assert oreal["data"] == [str(out / "expert.jsonl"), str(seed / "sft-rollouts.jsonl")]
    assert oreal["oreal_rm_warmup"] == 1
    for row in summary["splits"]["valid_unseen"].values():
        assert 0.0 <= row["nothing_happens"] <= 1.0
    assert "| OREO+best-of-2 |" in (out / "summary.md").read_text()
    assert (out / "summary.png").stat().st_size > 0
    capsys.readouterr()
    assert run.main(argv) == 0  # a rerun skips every stage
    assert "took" not in capsys.readouterr().out


def test_alfworld_mini_bad_config_names_the_key(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0]\nrolouts_per_task: 5\n")
    assert _load().main(["--config", str(bad)]) == 2
    assert "rolouts_per_task" in capsys.readouterr().out


def test_alfworld_mini_task_types_reach_every_split(tmp_path: Path, monkeypatch) -> None:
    run = _load()
    calls = []

    def gen_tasks(**kwargs):
        calls.append(kwargs)
        (Path(kwargs["root"]) / "json_2.1.1" / kwargs["split"]).mkdir(parents=True)
        return 0

    class Stop(Exception):
        pass

    def rollout(**kwargs):
        raise Stop

    monkeypatch.setattr(run.pipeline, "gen_tasks", gen_tasks)
    monkeypatch.setattr(run.pipeline, "rollout", rollout)
    config = Path(__file__).resolve().parents[2] / "bench" / "alfworld_mini" / "small.yaml"
    with pytest.raises(Stop):  # generation done, the expert stage is next
        run.main(["--config", str(config), "--out", str(tmp_path / "small")])
    assert [c["split"] for c in calls] == ["train", "valid_unseen", "valid_seen"]
    for c in calls:
        assert c["room_size"] == "small"
        assert c["task_types"] == ["pick_and_place_simple", "look_at_obj_in_light"]


def test_nothing_happens_counts_the_engine_answers(tmp_path: Path) -> None:
    from agentrl.trajectory import TrajectoryWriter
    from agentrl.types import Episode

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
    assert _load().nothing_happens(path) == 0.5  # 2 of 4 commands; the first observation is not an answer
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert _load().nothing_happens(empty) is None
