"""One SFT epoch with and without ``--group-by-length``, side by side on real trajectories.

Episodes of an agent task vary a lot in length (ALFWorld demonstrations: ~550 to ~3,100 tokens), so random
batches are ~40% padding that the model still computes. This bench counts the padded tokens each batching
computes over one epoch (exact) and times one epoch of ``agentrl.learner.train`` each way, alternating the two
configurations ``--repeats`` times so that load drift on a shared machine hits both alike.

Usage (after `make demo` or the ALFWorld mini-benchmark has written demonstrations and a tiny model)::

    PYTHONPATH=. python bench/group_by_length.py --data runs/demo/expert.jsonl --model runs/demo/base-model
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def padded_tokens(lengths: list[int], batch_size: int, seed: int, grouped: bool) -> int:
    """Tokens one epoch of right-padded batches computes (batch size x longest episode, summed)."""
    from agentrl.batches import micro_batch as _micro_batch

    items = list(range(len(lengths)))
    per_epoch = max(1, len(items) // batch_size)
    batches = [
        _micro_batch(items, m, batch_size, seed, lengths if grouped else None) for m in range(per_epoch)
    ]
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="trajectory JSONL (e.g. expert demonstrations)")
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=4096)
    args = parser.parse_args()

    from agentrl.learn_config import LearnConfig as Config
    from agentrl.learner import train
    from agentrl.models import load_tokenizer
    from agentrl.training_data import load_tokenized

    episodes, _ = load_tokenized([args.data], load_tokenizer(args.model), max_length=args.max_length)
    lengths = [len(e.input_ids) for e in episodes]
    real = sum(lengths[: (len(lengths) // args.batch_size) * args.batch_size])
    steps = max(1, len(lengths) // args.batch_size)
    print(
        f"{len(lengths)} episodes, {min(lengths)}-{max(lengths)} tokens (mean {statistics.mean(lengths):.0f}), "
        f"batch {args.batch_size}, one epoch = {steps} steps"
    )
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="group-by-length-") as tmp:
        for r in range(args.repeats):
            for grouped in (False, True):
                cfg = Config(algo="sft", data=[args.data], model=args.model, out=f"{tmp}/{r}-{grouped}", lr=1e-3,
                             batch_size=args.batch_size, max_steps=steps, max_length=args.max_length,
                             group_by_length=grouped, log_every=10**6)  # fmt: skip
                start = time.perf_counter()
                train(cfg, save=False)
                times[grouped].append(time.perf_counter() - start)
    print(f"{'batching':<10}{'padded tokens':>15}{'x real':>8}{'epoch s':>10}{'x random':>10}")
    for grouped in (False, True):
        pad = padded_tokens(lengths, args.batch_size, 0, grouped)
        secs = statistics.median(times[grouped])
        name = "grouped" if grouped else "random"
        print(
            f"{name:<10}{pad:>15,}{pad / real:>8.2f}{secs:>10.1f}{secs / statistics.median(times[False]):>10.2f}"
        )


if __name__ == "__main__":
    main()
