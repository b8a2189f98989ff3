"""The tiny-model tokenizer's ``split_digits`` option: one token per digit, text round-trips, default unchanged."""

from __future__ import annotations

from agentrl.models import train_tokenizer

CORPUS = [
    "He earns 195 * 12 = 2340 dollars a month.\n#### 28080",
    "Tom has 3 * 4 = 12 apples. 12 - 2 = 10.",
] * 50


def test_split_digits_gives_one_token_per_digit_and_round_trips(tmp_path):
    from transformers import AutoTokenizer

    train_tokenizer(CORPUS, 300, split_digits=True).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)  # the pre-tokenizer survives save/load
    text = "He earns 2340 dollars.\n#### 28080"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    assert all(not any(c.isdigit() for c in p) or p.strip().isdigit() and len(p.strip()) == 1 for p in pieces)
    assert "".join(pieces) == text and tok.decode(ids) == text


def test_default_tokenizer_still_merges_frequent_numbers():
    tok = train_tokenizer(CORPUS, 300)
    pieces = [tok.decode([i]) for i in tok("2340", add_special_tokens=False)["input_ids"]]
    assert any(len(p.strip()) > 1 and p.strip().isdigit() for p in pieces)


# --- the word-level tokenizer (`agentrl model tiny --tokenizer word`) --------------------------------------

CHAT = [
    {"role": "system", "content": "You are an agent in a household.\nEach turn, answer with exactly one line:"},
    {"role": "user", "content": "You arrive at countertop 1. On the countertop 1, you see a mug 12, and a spoon 2."},
    {"role": "assistant", "content": "Action: take mug 12 from countertop 1"},
    {"role": "user", "content": "You pick up the mug 12 from the countertop 1.\n\nYour task is to: heat it."},
]


def _word_tokenizer(vocab_size: int = 2048):
    from jinja2 import Template

    from agentrl.models import CHATML_TEMPLATE

    text = Template(CHATML_TEMPLATE).render(messages=CHAT, add_generation_prompt=False)
    return train_tokenizer([text] * 3, vocab_size, kind="word"), text


def test_word_tokenizer_keeps_object_names_and_numbers_whole_and_round_trips():
    tok, text = _word_tokenizer()
    pieces = [tok.decode([i]) for i in tok(" take mug 12 from countertop 1", add_special_tokens=False)["input_ids"]]
    assert pieces == [" take", " mug", " 12", " from", " countertop", " 1"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text  # spaces, blank lines and the ChatML tokens survive exactly
    rendered = tok.apply_chat_template(CHAT, tokenize=False)
    assert rendered == text and tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    # the special tokens were taken out of the corpus: none of their fragments became words
    assert not [w for w in tok.get_vocab() if ("<|" in w or "|>" in w) and w not in tok.all_special_tokens]


def test_word_tokenizer_maps_unknown_words_to_unk_without_crashing():
    tok, _ = _word_tokenizer()
    ids = tok(" take spatula 3 from countertop 1 ☃", add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces.count("<|unk|>") == 3  # " spatula", " 3", " ☃"
    assert tok.decode(ids, skip_special_tokens=True) == " take from countertop 1"


def test_word_vocabulary_cap_keeps_the_most_frequent_words():
    full, _ = _word_tokenizer()
    capped, text = _word_tokenizer(vocab_size=12)
    assert len(capped) == 12 < len(full)
    ids = capped(text, add_special_tokens=False)["input_ids"]
    assert capped.unk_token_id in ids  # rarer words fall back to <|unk|>
    pieces = capped.convert_ids_to_tokens(capped(" countertop spoon", add_special_tokens=False)["input_ids"])
    assert pieces == ["Ġcountertop", "<|unk|>"]  # 4 occurrences kept, 1 dropped


def test_word_tokenizer_save_load_round_trips(tmp_path):
    from transformers import AutoTokenizer

    tok, text = _word_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    probe = text + " a spatula 3"
    assert loaded(probe)["input_ids"] == tok(probe)["input_ids"]
    assert loaded.chat_template == tok.chat_template and loaded.unk_token == "<|unk|>"
    assert loaded.get_vocab() == tok.get_vocab()


def test_word_tokenizer_rejects_bpe_only_options():
    import pytest

    from agentrl.models import ModelError

    with pytest.raises(ModelError, match="split_digits is a BPE option"):
        train_tokenizer(CORPUS, 300, split_digits=True, kind="word")
    with pytest.raises(ModelError, match="tokenizer must be one of bpe, word"):
        train_tokenizer(CORPUS, 300, kind="chars")
