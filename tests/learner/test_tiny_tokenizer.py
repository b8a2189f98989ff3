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
