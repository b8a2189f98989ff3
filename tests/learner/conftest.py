"""Learner tests run torch single-threaded: the tiny models gain nothing from threads, and on a shared
2-core machine OpenMP spin-waiting made them ~30x more expensive in CPU time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- models the project did not create: other architectures, a tokenizer trained here, another chat template

ZEPHYR_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
FOREIGN_SPECIAL = ["<unk>", "<pad>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]


def _word_tokenizer(texts: list[str]):
    """A word-level tokenizer (BERT's whitespace-and-punctuation pre-tokenizer, one id per word of ``texts``,
    numbered in sorted order so every run gets the same ids) with a Zephyr chat template: not the project's
    byte-level BPE with ChatML. (tokenizers' Unigram and WordPiece trainers break ties differently from run to
    run.)"""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.BertPreTokenizer()
    words = sorted({w for text in texts for w, _ in pre.pre_tokenize_str(text)} - set(FOREIGN_SPECIAL))
    vocab = {t: i for i, t in enumerate(FOREIGN_SPECIAL + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(FOREIGN_SPECIAL)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = ZEPHYR_TEMPLATE
    return tokenizer


def _foreign_model(arch: str, vocab_size: int, tokenizer):
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    ids = dict(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if arch == "qwen2":  # grouped-query attention, untied embeddings
        config = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                             tie_word_embeddings=False, **ids)  # fmt: skip
        return Qwen2ForCausalLM(config)
    config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, max_position_embeddings=1024, rotary_pct=0.5, **ids)  # fmt: skip
    return GPTNeoXForCausalLM(config)


def _save_foreign(arch: str, folder: Path) -> Path:
    from jinja2 import Template

    from .helpers import episode

    template = Template(ZEPHYR_TEMPLATE)
    texts = [template.render(messages=episode(t, s, s == 0).messages) for t in range(8) for s in range(2)]
    tokenizer = _word_tokenizer(texts)
    _foreign_model(arch, len(tokenizer), tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Qwen2 checkpoint (GQA, untied head) with a word-level tokenizer and a Zephyr chat template."""
    return _save_foreign("qwen2", tmp_path_factory.mktemp("qwen2"))


@pytest.fixture(scope="session")
def neox_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny GPT-NeoX checkpoint (partial rotary) with the same tokenizer and template."""
    return _save_foreign("gpt_neox", tmp_path_factory.mktemp("gpt-neox"))
