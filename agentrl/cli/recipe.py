"""Run a recipe YAML (configs/demo.yaml, bench/*/config.yaml): every stage resumable, results over seeds."""

from __future__ import annotations

import sys
from pathlib import Path

from agentrl.recipes import RecipeConfig as Config
from agentrl.recipes import run_recipe

__all__ = ["Config", "main_with", "run"]


def run(cfg: Config) -> int:
    run_recipe(cfg)
    return 0


def main_with(config: str | Path, argv: list[str] | None = None) -> int:
    """``agentrl recipe --config CONFIG ARGV`` unless ARGV gives its own ``--config`` (a bench script's entry point)."""
    from agentrl.cli import main  # the package imports this module: import it when called

    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["--config", str(config), *argv]
    return main(["recipe", *argv])
