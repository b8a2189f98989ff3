"""The whole OREO loop on household tasks in minutes: generate, demonstrate, SFT, roll out, OREO, evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from agentrl.recipes import RecipeConfig, run_recipe


@dataclass
class Config(RecipeConfig):
    """`agentrl demo`: the offline-RL recipe with configs/demo.yaml (the shipped sizes) unless --config is given."""

    default_config: ClassVar[Path] = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def run(cfg: Config) -> int:
    run_recipe(cfg)
    return 0
