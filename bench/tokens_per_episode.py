"""Tokens per episode under the tiny models' tokenizers: word-level vs byte-level BPE, side by side.

For each trajectory file: the tokenizers are fitted to the first ``--fit`` episodes' chats (as
``agentrl model tiny`` fits them), then every episode is tokenized as the learner reads it. Printed per file and
tokenizer: the vocabulary, tokens per episode (mean and median), action tokens per assistant turn, the share of
``<|unk|>`` tokens in the episodes the tokenizer was not fitted to (word-level only), and the ratio of BPE to word
tokens per episode.

    agentrl rollout --env alfworld --data DATA --policy expert --thoughts off --no-example --episodes 60 \\
        --out runs/act.jsonl
    python bench/tokens_per_episode.py runs/act.jsonl --fit 40 --bpe 2048,512,384
"""

from __future__ import annotations

import argparse
import statistics

from jinja2 import Template

from agentrl.data import tokenize_episode
from agentrl.models import CHATML_TEMPLATE, train_tokenizer
from agentrl.trajectory import read_episodes


def measure(path: str, fit: int, bpe_sizes: list[int], word_size: int) -> list[tuple]:
    """Rows ``(file, tokenizer, vocab, mean, median, action tokens per turn, held-out unk %)``."""
    episodes = read_episodes(path)
    template = Template(CHATML_TEMPLATE)
    texts = [template.render(messages=ep.messages, add_generation_prompt=False) for ep in episodes]
    fit = min(fit, len(episodes))
    rows = []
    for kind, size in [("word", word_size), *(("bpe", s) for s in bpe_sizes)]:
        tok = train_tokenizer(texts[:fit], size, kind=kind)
        items = [tokenize_episode(ep, tok) for ep in episodes]
        lengths = [len(item.input_ids) for item in items]
        per_turn = statistics.mean(item.num_actions / max(1, ep.num_steps) for item, ep in zip(items, episodes, strict=True))
        unk = "-"
        if kind == "word" and fit < len(episodes):
            held = [i for item in items[fit:] for i in item.input_ids]
            unk = f"{100 * held.count(tok.unk_token_id) / max(1, len(held)):.2f}"
        rows.append((path, f"{kind} (cap {size})", len(tok), statistics.mean(lengths), statistics.median(lengths),
                     per_turn, unk))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="trajectory JSONL files")
    parser.add_argument("--fit", type=int, default=40, help="episodes the tokenizers are fitted to")
    parser.add_argument("--bpe", default="2048,512,384", help="BPE vocabulary caps, comma-separated")
    parser.add_argument("--word", type=int, default=2048, help="word-level vocabulary cap")
    args = parser.parse_args()
    sizes = [int(s) for s in args.bpe.split(",") if s]
    print("| file | tokenizer | vocab | tokens/episode mean | median | action tokens/turn | held-out unk % | "
          "x word |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.files:
        rows = measure(path, args.fit, sizes, args.word)
        word_mean = rows[0][3]
        for file, name, vocab, mean, median, per_turn, unk in rows:
            print(f"| {file} | {name} | {vocab} | {mean:.0f} | {median:.0f} | {per_turn:.1f} | {unk} | "
                  f"{mean / word_mean:.2f} |")


if __name__ == "__main__":
    main()
