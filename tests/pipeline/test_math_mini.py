"""bench/math_mini/run.py wiring on a micro config: every stage runs, writes its files, and a rerun skips all."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_protocol():
    spec = importlib.util.spec_from_file_location("math_mini_run", ROOT / "bench" / "math_mini" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the Config's annotations through it
    spec.loader.exec_module(module)
    return module


def test_math_mini_protocol_micro(tmp_path: Path, capsys) -> None:
    protocol = _load_protocol()
    out = tmp_path / "mm"
    argv = [
        "--out",
        str(out),
        "--train-problems",
        "6",
        "--rollout-problems",
        "2",
        "--samples-per-task",
        "2",
        "--test-problems",
        "2",
        "--gsm8k-problems",
        "1",
        "--hidden-size",
        "32",
        "--num-layers",
        "1",
        "--num-heads",
        "2",
        "--vocab-size",
        "300",
        "--sft-epochs",
        "1",
        "--oreo-epochs",
        "1",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--max-new-tokens",
        "6",
        "--num-envs",
        "1",
        "--beams",
        "1,2",
        "--learners",
        "dqo",
    ]
    assert protocol.main(argv) == 0  # the shipped config.yaml, overridden by the flags

    assert len((out / "expert.jsonl").read_text().splitlines()) == 6
    assert len((out / "sft-rollouts.jsonl").read_text().splitlines()) == 4
    assert (out / "oreo" / "critic").is_dir() and (out / "oreo" / "policy" / "config.json").is_file()
    for stage in ("sft", "oreo"):  # checkpoints on the way, so a killed stage resumes
        assert json.loads((out / stage / "learn_config.json").read_text())["save_every"] == 100
    methods = ["SFT greedy", "OREO greedy", "OREO beam B=1", "OREO beam B=2", "DQO greedy"]
    dqo = json.loads((out / "dqo" / "learn_config.json").read_text())
    assert (dqo["algo"], dqo["level"], dqo["data"]) == ("dqo", "token", [str(out / "sft-rollouts.jsonl")])
    for dataset, n in (("gsm-symbolic", 2), ("gsm8k-test-100", 1)):
        for method in methods:
            result = json.loads(protocol.result_path(out, dataset, method).read_text())
            assert result["episodes"] == n and result["method"] == method
        assert (out / "plots" / f"{dataset}.png").stat().st_size > 0
    assert (out / "plots" / "oreo-metrics.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["dataset"], r["method"]) for r in summary["results"]] == [
        (d, m) for d in ("gsm-symbolic", "gsm8k-test-100") for m in methods
    ]
    assert summary["config"]["split_digits"] is True and summary["stage_seconds"]
    table = (out / "results.md").read_text()
    assert table.count("\n") == 2 + len(methods) and "GSM8K test (100)" in table

    capsys.readouterr()
    assert protocol.main(argv) == 0  # everything done: every stage is skipped
    assert capsys.readouterr().out.count("done already") == 6 + 2 * len(methods) + 3


def test_math_mini_dataset_key_picks_the_test_set(tmp_path: Path) -> None:
    import pytest

    from agentrl.config import ConfigError

    protocol = _load_protocol()
    cfg = protocol.Config(dataset="chain-sum", train_problems=4000, test_problems=200, gsm8k_problems=0)
    plan = protocol.eval_plan(cfg, tmp_path)
    assert {d for d, _, _ in plan} == {"chain-sum"} and all(e["episodes"] == 200 for _, _, e in plan)
    assert [Path(p).name for p in protocol.oreo_data(cfg, tmp_path)] == ["expert.jsonl", "sft-rollouts.jsonl"]
    cfg.oreo_expert = False  # the policy's own samples only
    assert [Path(p).name for p in protocol.oreo_data(cfg, tmp_path)] == ["sft-rollouts.jsonl"]
    with pytest.raises(ConfigError, match="dataset"):
        protocol.Config(dataset="gsm8k-test-100")
