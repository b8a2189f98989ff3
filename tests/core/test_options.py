"""Option groups: declared once, composed into command configs, flat flags, grouped --help."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agentrl.config import ConfigError, build_parser, option, parse_config
from agentrl.evaluate import EvalConfig
from agentrl.options import AgentOptions, EnvOptions, ModelOptions, OutputOptions, SamplingOptions, values
from agentrl.rollout import RolloutConfig


def test_rollout_and_eval_share_every_group_field() -> None:
    """The env/policy/model/sampling/output fields of rollout and eval are the same declarations."""
    shared = {f.name for g in (EnvOptions, AgentOptions, OutputOptions) for f in dataclasses.fields(g)}
    for cls in (RolloutConfig, EvalConfig):
        assert shared <= {f.name for f in dataclasses.fields(cls)}
    assert {"env", "model", "temperature", "out", "policy", "max_steps", "critic"} <= shared


def test_each_groups_checks_run_in_a_composed_config() -> None:
    with pytest.raises(ConfigError, match="`env` must be one of"):
        RolloutConfig(env="chess", out="x")
    with pytest.raises(ConfigError, match="`dtype`"):
        RolloutConfig(env="math", out="x", dtype="int8")
    with pytest.raises(ConfigError, match="`top_p`"):
        EvalConfig(env="math", out="x", top_p=2.0)
    with pytest.raises(ConfigError, match="`out` is required"):
        RolloutConfig(env="math")
    with pytest.raises(ConfigError, match="`policy` must be one of"):
        EvalConfig(env="math", out="x", policy="oracle")


def test_values_moves_groups_between_configs(tmp_path: Path) -> None:
    cfg = EvalConfig(env="math", dataset="chain-sum", out=str(tmp_path / "r.json"), temperature=0.5, seed=3)
    moved = values(cfg, EnvOptions, SamplingOptions)
    assert moved["dataset"] == "chain-sum" and moved["temperature"] == 0.5 and moved["seed"] == 3
    assert "out" not in moved and "model" not in moved
    rollout = RolloutConfig(**moved, out=str(tmp_path / "x.jsonl"))
    assert rollout.split == "test" and rollout.temperature == 0.5  # the eval's resolved split travels


def test_help_lists_options_under_their_group() -> None:
    text = build_parser(RolloutConfig, "agentrl rollout").format_help()
    titles = ["command options:", "environment options:", "policy options:", "model options:",
              "sampling options:", "output options:"]
    positions = [text.index(t) for t in titles]
    assert positions == sorted(positions)
    env_section = text[text.index("environment options:"):text.index("policy options:")]
    assert "--max-steps" in env_section and "--model" not in env_section


def test_a_command_may_redefine_a_group_default() -> None:
    @dataclasses.dataclass
    class Sampled(SamplingOptions, ModelOptions):
        temperature: float | None = option(0.7, help="rollout temperature")

    cfg = parse_config(Sampled, ["--model", "m"], prog="x")
    assert cfg.temperature == 0.7 and cfg.model == "m"
    assert parse_config(Sampled, ["--temperature", "0"], prog="x").temperature == 0.0
