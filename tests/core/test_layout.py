"""Package layout: every module imports, envs/policies live only under the agentrl namespace, configs load."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import agentrl

ROOT = Path(__file__).resolve().parents[2]


def all_modules() -> list[str]:
    names = []
    for package in ("agentrl", "agentrl.envs", "agentrl.policies"):
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=package + "."):
            names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", all_modules())
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_envs_and_policies_are_not_top_level(tmp_path: Path) -> None:
    code = (
        "import importlib.util, agentrl.envs, agentrl.policies;"
        "print(importlib.util.find_spec('envs') is None, importlib.util.find_spec('policies') is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_console_script_help() -> None:
    exe = Path(sys.executable).parent / "agentrl"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "usage: agentrl" in out.stdout


def test_version() -> None:
    assert agentrl.__version__


def test_every_config_yaml_loads() -> None:
    """Each configs/<command>*.yaml parses into that command's Config (unknown keys would fail)."""
    from agentrl.cli import COMMANDS
    from agentrl.config import load_yaml, parse_config

    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files, "configs/ has no YAML files"
    for path in files:
        command = path.stem.split("_")[0].split("-")[0]
        assert command in COMMANDS, f"{path.name}: name must start with a command ({', '.join(COMMANDS)})"
        module = importlib.import_module(COMMANDS[command])
        load_yaml(path)
        parse_config(module.Config, ["--config", str(path)], prog=f"agentrl {command}")
