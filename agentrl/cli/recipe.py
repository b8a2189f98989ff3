"""Run a recipe YAML (configs/demo.yaml, bench/*/config.yaml): every stage resumable, results over seeds."""

from __future__ import annotations

from agentrl.recipes import RecipeConfig as Config
from agentrl.recipes import run_recipe

__all__ = ["Config", "run"]


def run(cfg: Config) -> int:
    run_recipe(cfg)
    return 0
