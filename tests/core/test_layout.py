"""Package layout: every module imports, envs/policies live only under the agentrl namespace, configs load."""

from __future__ import annotations

import ast
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


def _modules(*folders: str) -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def _imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def test_dependencies_point_one_way() -> None:
    """The library never imports agentrl.cli; envs/ imports nothing of the core (only agentrl.envs)."""
    for path, tree in _modules("agentrl"):
        if "cli" not in path.relative_to(ROOT / "agentrl").parts:
            assert not [n for n in _imported(tree) if n.startswith("agentrl.cli")], path
    for path, tree in _modules("envs"):
        core = [n for n in _imported(tree) if n.startswith("agentrl") and not n.startswith("agentrl.envs")]
        assert not core, (path, core)


def test_no_function_over_80_lines_in_the_core() -> None:
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, tree in _modules("agentrl", "envs", "policies") for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 80]
    assert not long, long


def test_help_imports_no_torch() -> None:
    """`agentrl --help` (every command's module) loads without torch: heavy imports wait for `run`."""
    code = "import sys; from agentrl.cli import _usage; _usage(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_architecture_doc_names_every_module() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    def named(path: Path) -> bool:  # a command module by its command's name, any other module by its file name
        return (path.stem if path.parent.name == "cli" else path.name) in text

    missing = [str(p.relative_to(ROOT)) for folder in ("agentrl", "envs", "policies")
               for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py" and not named(p)]
    assert not missing, f"docs/ARCHITECTURE.md does not mention {missing}"


def _readme_commands() -> list[list[str]]:
    import shlex

    commands, inside, pending = [], False, ""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        line = pending + line.split("  #")[0].strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("agentrl "):
            commands.append(shlex.split(line)[1:])
    return commands


def test_readme_commands_use_real_flags() -> None:
    """Every `agentrl ...` line of the README parses: its command exists and it uses no unknown flag."""
    from agentrl.cli import COMMANDS
    from agentrl.config import build_parser

    commands = _readme_commands()
    assert len(commands) > 15
    for argv in commands:
        assert argv[0] in COMMANDS, argv
        module = importlib.import_module(COMMANDS[argv[0]])
        _, unknown = build_parser(module.Config, f"agentrl {argv[0]}").parse_known_args(argv[1:])
        assert not unknown, (argv, unknown)
