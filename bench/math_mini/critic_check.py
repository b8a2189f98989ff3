"""Does the OREO critic tell a right reasoning step from a wrong one, or only an easy problem from a hard one?

    PYTHONPATH=. .venv/bin/python bench/math_mini/critic_check.py --dataset chain-sum \
        --beams runs/math_mini/chain_sum/results/chain-sum/OREO_beam_B5.jsonl \
        --rollouts runs/math_mini/chain_sum/sft-rollouts.jsonl --model runs/math_mini/chain_sum/sft/policy \
        --critics runs/math_mini/chain_sum/oreo/critic

Three checks, for the datasets whose problems carry reference steps (``gsm-symbolic``, ``chain-sum``):

* ``--beams``/``--greedy`` trajectory files: the share of steps written as the reference writes them (a step
  counts while the episode has followed the reference so far), and where the first wrong step falls.
* ``--beams``: at states on the reference path whose recorded candidates hold the reference step and another,
  how often the top-valued candidate is the reference step (against a random pick), and how often the critic
  values the reference step above a different candidate (the within-state AUC).
* ``--rollouts`` with ``--critics``: on train problems whose sampled rollouts have both outcomes, the critic's
  value after action k as a success predictor, pooled over problems and within each problem (a success against
  a failure of the same question). A critic that only learnt which problems are hard scores ~0.5 within.

A diagnostic of bench/math_mini's results (bench/math_mini/RESULTS.md), not a metric of agentrl.
"""

from __future__ import annotations

import argparse
import collections
import random

from agentrl.critic_report import afterstate_values, auc, grouped_auc
from agentrl.envs.math.datasets import load_problems
from agentrl.trajectory import read_episodes


def on_reference_path(episode, reference: tuple[str, ...]):
    """(k, step) for the steps taken while the episode had written the reference's first k steps."""
    for k, step in enumerate(episode.steps):
        if k >= len(reference):
            return
        yield k, step
        if step.action.strip() != reference[k]:
            return


def step_report(path: str, problems: dict) -> None:
    right = total = 0
    first_wrong: collections.Counter[int] = collections.Counter()
    groups, top_right, chance = [], 0, 0.0
    for episode in read_episodes(path):
        reference = problems[episode.task_id].steps
        for k, step in on_reference_path(episode, reference):
            total += 1
            ok = step.action.strip() == reference[k]
            right += ok
            if not ok:
                first_wrong[k + 1] += 1
            candidates = step.candidates or []
            good = [c.value for c in candidates if c.action.strip() == reference[k]]
            bad = [c.value for c in candidates if c.action.strip() != reference[k]]
            if good and bad:  # the critic's choice matters
                groups.append((good, bad))
                top_right += max(candidates, key=lambda c: c.value).action.strip() == reference[k]
                chance += len(good) / len(candidates)
    print(f"{path}: {right}/{total} steps right ({right / max(1, total):.0%}); first wrong step at "
          f"{dict(sorted(first_wrong.items()))}")  # fmt: skip
    if groups:
        within, n = grouped_auc(groups)
        print(f"  {len(groups)} states whose candidates hold the reference step and another: the top-valued one is "
              f"the reference step in {top_right} (a random pick: {chance:.1f}); within-state AUC {within:.3f} over "
              f"{n} pairs")  # fmt: skip


def critic_report(rollouts: str, model: str, critics: list[str], problems_cap: int, turns: int) -> None:
    import torch

    from agentrl.critic import ValueModel
    from agentrl.models import load_tokenizer
    from agentrl.training_data import load_tokenized

    episodes, _ = load_tokenized([rollouts], load_tokenizer(model), max_length=4096)
    by_task: dict[str, list] = collections.defaultdict(list)
    for e in episodes:
        by_task[e.task_id].append(e)
    mixed = sorted(t for t, es in by_task.items() if 0 < sum(e.success for e in es) < len(es))
    random.Random(0).shuffle(mixed)
    mixed = mixed[:problems_cap]
    print(f"{rollouts}: {len(by_task)} problems, {len(mixed)} with both outcomes sampled (used)")
    for critic in critics:
        value_model = ValueModel.from_pretrained(critic, dtype=torch.float32, device="cpu").eval()
        values = {t: list(zip(afterstate_values(value_model, by_task[t]), [e.success for e in by_task[t]],
                              strict=True)) for t in mixed}  # fmt: skip
        for k in range(1, turns + 1):
            groups = []
            for vs in values.values():
                reached = [(v[k - 1], ok) for v, ok in vs if len(v) >= k]
                groups.append(([v for v, ok in reached if ok], [v for v, ok in reached if not ok]))
            pooled = auc([v for g in groups for v in g[0]], [v for g in groups for v in g[1]])
            within, n = grouped_auc(groups)
            print(f"  {critic} V after action {k}: AUC pooled {pooled:.3f}, within a problem {within:.3f} ({n} pairs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="chain-sum", help="gsm-symbolic or chain-sum (the test split)")
    parser.add_argument("--test-problems", type=int, default=1000, help="problems generated for the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beams", nargs="*", default=[], help="beam-search / greedy trajectory files (test)")
    parser.add_argument("--rollouts", help="SFT-policy rollouts on train problems (OREO's data)")
    parser.add_argument("--model", help="the model folder whose tokenizer the learner used")
    parser.add_argument("--critics", default="", help="critic folders, comma-separated")
    parser.add_argument("--problems", type=int, default=120, help="mixed-outcome train problems to score")
    parser.add_argument("--turns", type=int, default=3, help="report V after actions 1..turns")
    args = parser.parse_args()
    if args.beams:
        test = {p.id: p for p in load_problems(args.dataset, "test", args.test_problems, args.seed)}
        for path in args.beams:
            step_report(path, test)
    if args.rollouts and args.critics:
        if not args.model:
            parser.error("--rollouts with --critics needs --model (the tokenizer)")
        critic_report(args.rollouts, args.model, args.critics.split(","), args.problems, args.turns)


if __name__ == "__main__":
    main()
