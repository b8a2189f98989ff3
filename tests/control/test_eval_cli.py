"""`agentrl eval` end to end through the rollout engine on a fake pool (no ALFWorld, no model)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from agentrl.cli import main
from agentrl.config import ConfigError
from agentrl.evaluate import EvalConfig as Config
from agentrl.evaluate import evaluate
from agentrl.policies.best_of_k import BestOfK, OracleScorer
from agentrl.replay import LiveView
from agentrl.trajectory import read_episodes

from .fake_env import CorridorPool, NoisyExpert, remaining_plan


def _cfg(tmp_path: Path, **kw) -> Config:
    base = {"env": "alfworld", "data": str(tmp_path), "policy": "expert", "out": str(tmp_path / "results.json"),
            "progress": False}
    base.update(kw)
    return Config(**base)


def test_expert_eval_writes_results(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, trajectories=str(tmp_path / "eps.jsonl"), num_envs=2)
    results = evaluate(cfg, pool=CorridorPool(num_tasks=6))
    assert results["success_rate"] == 1.0 and results["episodes"] == 6
    assert sum(v["n"] for v in results["by_task_type"].values()) == 6
    assert set(results["by_task_type"]) == {"corridor3", "corridor4", "corridor5"}
    assert results["ci95"][1] == 1.0 and 0.5 < results["ci95"][0] < 0.7
    assert results["mean_steps"] == (3 + 4 + 5) / 3  # the expert's plan lengths
    saved = json.loads(Path(cfg.out).read_text())
    assert saved["config"]["max_steps"] == 40 and saved["method"] == "expert"
    assert len(read_episodes(tmp_path / "eps.jsonl")) == 6


def test_oracle_best_of_k_beats_sampling_through_eval(tmp_path: Path) -> None:
    greedy = evaluate(_cfg(tmp_path, out=str(tmp_path / "g.json"), max_steps=8, num_envs=3),
                      pool=CorridorPool(num_tasks=9), policy=NoisyExpert(p=0.3, seed=3))
    policy = BestOfK(NoisyExpert(p=0.3, seed=3), OracleScorer(remaining_plan), k=5)
    path = tmp_path / "b.jsonl"
    best = evaluate(_cfg(tmp_path, out=str(tmp_path / "b.json"), max_steps=8, num_envs=3, trajectories=str(path)),
                    pool=CorridorPool(num_tasks=9), policy=policy)
    assert best["success_rate"] > greedy["success_rate"]
    step = read_episodes(path)[0].steps[0]
    assert step.value is not None and step.candidates and len(step.candidates) >= 2
    assert main(["eval", "--compare", str(tmp_path / "g.json"), str(tmp_path / "b.json")]) == 0


def test_live_view_plain_lines(tmp_path: Path) -> None:
    console = Console(record=True, width=100, file=open("/dev/null", "w"))  # noqa: SIM115
    view = LiveView(console, slot=1, max_steps=8, plain=True)
    policy = BestOfK(NoisyExpert(p=0.3, seed=0), OracleScorer(remaining_plan), k=3)
    from agentrl.evaluate import rollout_config
    from agentrl.rollout import rollout

    rollout(rollout_config(_cfg(tmp_path, num_envs=2, max_steps=8), str(tmp_path / "e.jsonl")), view,
            pool=CorridorPool(num_tasks=4), policy=policy)
    text = console.export_text()
    lines = text.splitlines()
    assert all(line.startswith("[env 1]") for line in lines)
    assert "task: take the key" in text and " K=" in text and " V=" in text
    assert view.episodes == 2  # slot 1 ran two of the four tasks
    assert sum(("SUCCESS" in line) or ("FAILURE" in line) for line in lines) == 2


def test_live_view_rich_frames(tmp_path: Path) -> None:
    console = Console(record=True, width=90, file=open("/dev/null", "w"), force_terminal=True)  # noqa: SIM115
    view = LiveView(console, slot=0, max_steps=10)
    from agentrl.evaluate import rollout_config
    from agentrl.rollout import rollout

    rollout(rollout_config(_cfg(tmp_path, policy="expert", max_steps=10), str(tmp_path / "e.jsonl")), view,
            pool=CorridorPool(num_tasks=1))
    text = console.export_text()
    assert "take the key" in text and "step 3" in text and "SUCCESS in 3 steps" in text


def test_config_checks(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ConfigError, match="needs --critic"):
        _cfg(tmp_path, policy="react", best_of=3)
    with pytest.raises(ConfigError, match="not both"):
        _cfg(tmp_path, policy="react", best_of=3, beam=2, critic=str(tmp_path))
    with pytest.raises(ConfigError, match="--beam is step-level search for math"):
        _cfg(tmp_path, policy="react", beam=2, critic=str(tmp_path))
    assert _cfg(tmp_path, env="math", data=None, policy="react", beam=2, critic=str(tmp_path)).max_steps == 20
    assert _cfg(tmp_path, policy="react", best_of=3, critic=str(tmp_path)).temperature == 1.0
    assert main(["eval", "--env", "alfworld", "--out", "r.json", "--best-of", "3", "--policy", "react"]) == 2


def test_rollout_best_of_k_and_live_options(tmp_path: Path) -> None:
    import pytest

    from agentrl.cli.rollout import Config as RolloutCli

    base = {"env": "alfworld", "data": str(tmp_path), "out": str(tmp_path / "r.jsonl")}
    with pytest.raises(ConfigError, match="needs --critic"):
        RolloutCli(policy="best_of_k", **base)
    with pytest.raises(ConfigError, match="--temperature > 0"):
        RolloutCli(policy="best_of_k", critic=str(tmp_path), best_of=3, temperature=0.0, **base)
    # Sampling K candidates defaults to temperature 1 in rollouts as in eval; --policy best_of_k alone is K=5.
    assert RolloutCli(policy="best_of_k", critic=str(tmp_path), best_of=3, **base).temperature == 1.0
    assert RolloutCli(policy="best_of_k", critic=str(tmp_path), **base).best_of == 5
    assert RolloutCli(policy="react", critic=str(tmp_path), best_of=3, **base).policy == "best_of_k"
    with pytest.raises(ConfigError, match="live_slot"):
        RolloutCli(policy="expert", live=True, live_slot=2, num_envs=2, **base)
    cfg = RolloutCli(policy="best_of_k", critic=str(tmp_path), best_of=3, temperature=1.0, live=True, **base)
    assert cfg.best_of == 3 and cfg.live


def test_eval_prints_only_its_own_table(tmp_path: Path, capsys) -> None:
    """With progress on, eval shows its results table, not the rollout engine's summary table as well."""
    cfg = _cfg(tmp_path, trajectories=str(tmp_path / "eps.jsonl"), progress=True)
    evaluate(cfg, pool=CorridorPool(num_tasks=2))
    assert "rollout:" not in capsys.readouterr().out
