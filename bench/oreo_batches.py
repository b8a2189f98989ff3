"""Why OREO batches are random: outcome-pure batches under ``--group-by-length``, and what the critics learn.

On agent data an episode's length gives its outcome away: successes stop early, failures run to the step cap. So
length-sorted windows (``agentrl learn --group-by-length``) make batches that hold one outcome, and the OREO
critic is pushed towards each batch's mean return in turn instead of learning which states lead to success.
This bench prints, on real trajectories:

1. how many of an epoch's batches hold a single outcome, length-grouped vs random (exact, same seed);
2. for each ``--critics`` folder, V after the k-th action of successful and failed episodes and the AUC of V
   as a success predictor (0.5: no better than chance), on a balanced sample of ``--data`` episodes.

Usage (after seed 0 of the small-room mini-benchmark; ``--critics`` takes any ``agentrl learn`` OUT/critic)::

    PYTHONPATH=. python bench/oreo_batches.py --data runs/alfworld_small/expert.jsonl,runs/alfworld_small/seed0/sft-rollouts.jsonl \\
        --model runs/alfworld_small/seed0/sft/policy --critics GROUPED/critic,runs/alfworld_small/seed0/oreo/critic
"""

from __future__ import annotations

import argparse
import random
import statistics


def one_outcome_batches(success: list[bool], lengths: list[int] | None, batch_size: int, seed: int) -> int:
    """Batches of one epoch of ``agentrl.learner`` order (grouped when ``lengths`` is given) with one outcome."""
    from agentrl.batches import micro_batch as _micro_batch

    items = list(range(len(success)))
    per_epoch = max(1, len(items) // batch_size)
    batches = [_micro_batch(items, m, batch_size, seed, lengths) for m in range(per_epoch)]
    return sum(len({success[i] for i in b}) == 1 for b in batches)


def values_after_actions(critic_path: str, episodes: list, turns: int) -> list[dict[str, float]]:
    """V after the k-th action (its afterstate) of successes and failures, k <= turns, and its AUC."""
    import torch

    from agentrl.critic import ValueModel
    from agentrl.critic_report import afterstate_values, outcome_auc_by_turn

    model = ValueModel.from_pretrained(critic_path, dtype=torch.float32, device="cpu").eval()
    values = afterstate_values(model, episodes)
    return outcome_auc_by_turn(values, [e.success for e in episodes], [e.task_id for e in episodes], turns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="trajectory JSONL file(s), comma-separated (OREO's data)")
    parser.add_argument("--model", required=True, help="model folder whose tokenizer the learner used")
    parser.add_argument("--critics", default="", help="critic folders to compare, comma-separated")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="the learner's --seed (data order)")
    parser.add_argument("--episodes", type=int, default=200, help="balanced sample for the critics (half each)")
    parser.add_argument("--turns", type=int, default=6, help="report V after actions 1..turns")
    parser.add_argument("--max-length", type=int, default=4096)
    args = parser.parse_args()

    from agentrl.models import load_tokenizer
    from agentrl.training_data import load_tokenized

    episodes, _ = load_tokenized(args.data.split(","), load_tokenizer(args.model), max_length=args.max_length)
    success = [e.success for e in episodes]
    lengths = [len(e.input_ids) for e in episodes]
    per_epoch = len(episodes) // args.batch_size

    def median(ok: bool) -> float:
        return statistics.median(n for n, s in zip(lengths, success, strict=True) if s == ok)

    print(f"{len(episodes)} episodes, {sum(success)} successes; median tokens: success {median(True):.0f}, "
          f"failure {median(False):.0f}")  # fmt: skip
    for name, grouping in (("random", None), ("length-grouped", lengths)):
        pure = one_outcome_batches(success, grouping, args.batch_size, args.seed)
        print(f"{name} batches of {args.batch_size}: {pure} of {per_epoch} hold one outcome")

    rng = random.Random(0)
    wins = [e for e in episodes if e.success]
    losses = [e for e in episodes if not e.success]
    half = args.episodes // 2
    sample = rng.sample(wins, min(half, len(wins))) + rng.sample(losses, min(half, len(losses)))
    for critic in filter(None, args.critics.split(",")):
        print(f"\n{critic}: V after action k (successes / failures), AUC of V as a success predictor")
        for row in values_after_actions(critic, sample, args.turns):
            print(f"  k={row['k']}: {row['mean_success']:+.3f} / {row['mean_failure']:+.3f}  AUC {row['pooled']:.3f}"
                  f"  (within a task {row['within']:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
