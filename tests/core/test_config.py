"""Config loading: YAML + flags, unknown keys with did-you-mean, type errors naming the key, exit code 2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agentrl.cli import main
from agentrl.config import ConfigError, option, parse_config, require


@dataclass
class RunConfig:
    """A config shaped like the rollout command's."""

    episodes: int = option(4, help="number of episodes")
    temperature: float = option(0.0, help="sampling temperature")
    live: bool = option(False, help="show the live view")
    splits: list[str] = option(["train"], help="splits")
    out: str | None = option(None, help="output file")

    def __post_init__(self) -> None:
        require(self.episodes > 0, f"episodes must be positive, got {self.episodes}")


def test_defaults_yaml_and_flag_override(tmp_path: Path) -> None:
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("episodes: 7\ntemperature: 0.5\nsplits: [train, valid_seen]\n")
    cfg = parse_config(RunConfig, ["--config", str(cfg_file), "--episodes", "9", "--live"], prog="t")
    assert cfg == RunConfig(episodes=9, temperature=0.5, live=True, splits=["train", "valid_seen"])
    assert parse_config(RunConfig, [], prog="t") == RunConfig()


def test_unknown_yaml_key_names_nearest_and_line(tmp_path: Path) -> None:
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("temperature: 0.3\nepisdoes: 5\n")
    with pytest.raises(ConfigError, match=r"run.yaml:2: unknown key `episdoes`; did you mean `episodes`"):
        parse_config(RunConfig, ["--config", str(cfg_file)], prog="t")


def test_unknown_flag_names_nearest() -> None:
    with pytest.raises(ConfigError, match="did you mean `temperature`"):
        parse_config(RunConfig, ["--temprature", "1"], prog="t")


def test_bad_value_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`episodes` must be int, got 'many'"):
        parse_config(RunConfig, ["--episodes", "many"], prog="t")
    with pytest.raises(ConfigError, match="episodes must be positive"):
        parse_config(RunConfig, ["--episodes", "0"], prog="t")


def test_non_mapping_yaml_is_an_error(tmp_path: Path) -> None:
    cfg_file = tmp_path / "list.yaml"
    cfg_file.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(RunConfig, ["--config", str(cfg_file)], prog="t")


def test_cli_unknown_key_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["model", "--forse"]) == 2
    err = capsys.readouterr().err
    assert "did you mean `force`" in err and "Traceback" not in err


def test_cli_unknown_command_and_help(capsys: pytest.CaptureFixture) -> None:
    assert main(["modle"]) == 2
    assert "did you mean `model`" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out
