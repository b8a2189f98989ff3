"""Does the critic rank the actions available at one state? The within-state AUC on ALFWorld expert states.

The expert plays each task of ``--split``; at every state it visits, every admissible command ``c`` is valued
by the critic through the scorer best-of-K uses (:class:`agentrl.policies.scoring.CriticScorer`, i.e. V after
the candidate turn ``Think: <the expert's thought for c>\\nAction: c``), and the expert's own command is the
positive. Reported: the within-state AUC (expert command vs each other admissible command of the same state),
how often the top-valued command is the expert's (against a random pick), and on ``--data`` trajectories the
outcome AUC of V after action k (pooled and within a task), at the learner's afterstate positions.

    PYTHONPATH=. .venv/bin/python bench/critic_states.py --data-root runs/small/data --split valid_unseen \\
        --model runs/small/seed0/sft/policy --critics runs/small/seed0/oreo/critic --tasks 100

``--unchecked`` reads critics that were not trained at afterstates (the measurement before the fix of issue 16:
the same scorer, the same read position, a critic trained only at the states before actions).
"""

from __future__ import annotations

import argparse
import random

from agentrl.critic_report import afterstate_values, grouped_auc, outcome_auc_by_turn


def load_scorer(path: str, tokenizer, unchecked: bool):
    import torch

    from agentrl.critic import ValueModel
    from agentrl.policies.scoring import CriticScorer

    if not unchecked:
        return CriticScorer.from_pretrained(path, tokenizer)
    model = ValueModel.from_pretrained(path, dtype=torch.float32, device="cpu")
    return CriticScorer(model, tokenizer)


def expert_states(data_root: str, split: str, tasks: int, max_steps: int, seed: int):
    """Yields ``(task_id, context, admissible, expert_action)`` at every state of the expert's episodes."""
    import gymnasium

    import agentrl.envs  # noqa: F401 - registers the envs
    from agentrl.policies.base import Context, Decision
    from agentrl.policies.expert import expert_thought
    from agentrl.policies.prompts import format_react, initial_messages, record_turn

    env = gymnasium.make("agentrl/ALFWorld-v0", data=data_root, split=split, max_episode_steps=max_steps)
    ids = sorted(env.unwrapped.task_ids)
    random.Random(seed).shuffle(ids)
    for n, task in enumerate(ids[:tasks]):
        obs, info = env.reset(seed=seed + n, options={"task_id": task})
        ctx = Context(slot=0, messages=initial_messages("alfworld", obs, info, example=False), observation=obs,
                      info=info, env_kind="alfworld", memory={"cache_key": task})
        for step in range(max_steps):
            expert = info.get("expert_action")
            if not expert:
                break
            yield task, ctx, list(dict.fromkeys(info["admissible_actions"])), expert, step == 0
            thought = expert_thought(expert, info, step == 0)
            decision = Decision(expert, format_react(thought, expert, "alfworld"), thought)
            obs, _reward, terminated, truncated, info = env.step(expert)
            record_turn(ctx, decision, obs, info)
            if terminated or truncated:
                break
    env.close()


def within_state(scorer, args) -> dict[str, float]:
    from agentrl.policies.base import Decision
    from agentrl.policies.expert import expert_thought
    from agentrl.policies.prompts import format_react

    groups, top, chance, states = [], 0, 0.0, 0
    for _task, ctx, admissible, expert, first in expert_states(args.data_root, args.split, args.tasks,
                                                                args.max_steps, args.seed):
        if expert not in admissible or len(admissible) < 2:
            continue
        cands = []
        for c in admissible:
            thought = expert_thought(c, ctx.info, first)
            cands.append(Decision(c, format_react(thought, c, "alfworld"), thought))
        values = scorer.score([ctx], [cands])[0]
        good = [v for c, v in zip(admissible, values, strict=True) if c == expert]
        bad = [v for c, v in zip(admissible, values, strict=True) if c != expert]
        groups.append((good, bad))
        top += admissible[max(range(len(values)), key=lambda j: (values[j], -j))] == expert
        chance += 1 / len(admissible)
        states += 1
    within, pairs = grouped_auc(groups)
    return {"states": states, "within_auc": within, "pairs": pairs, "top_is_expert": top / max(1, states),
            "random_pick": chance / max(1, states)}


def outcome(critic: str, args) -> list[dict[str, float]]:
    import torch

    from agentrl.critic import ValueModel
    from agentrl.models import load_tokenizer
    from agentrl.training_data import load_tokenized

    episodes, _ = load_tokenized(args.data.split(","), load_tokenizer(args.model), max_length=4096)
    rng = random.Random(0)
    wins = [e for e in episodes if e.success]
    fails = [e for e in episodes if not e.success]
    half = args.episodes // 2
    sample = rng.sample(wins, min(half, len(wins))) + rng.sample(fails, min(half, len(fails)))
    model = ValueModel.from_pretrained(critic, dtype=torch.float32, device="cpu").eval()
    values = afterstate_values(model, sample)
    return outcome_auc_by_turn(values, [e.success for e in sample], [e.task_id for e in sample], args.turns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", required=True, help="ALFWorld data root (agentrl gen alfworld --out)")
    parser.add_argument("--split", default="valid_unseen")
    parser.add_argument("--model", required=True, help="the policy folder whose tokenizer the critic reads with")
    parser.add_argument("--critics", required=True, help="critic folders, comma-separated")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="", help="trajectory files for the outcome AUC (OREO's data)")
    parser.add_argument("--episodes", type=int, default=200, help="balanced sample for the outcome AUC")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--unchecked", action="store_true", help="read critics not trained at afterstates")
    args = parser.parse_args()

    from agentrl.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    for critic in args.critics.split(","):
        scorer = load_scorer(critic, tokenizer, args.unchecked)
        r = within_state(scorer, args)
        print(f"{critic}: {r['states']} expert states on {args.split}: within-state AUC {r['within_auc']:.3f} "
              f"({r['pairs']} pairs); top-valued command is the expert's in {100 * r['top_is_expert']:.1f}% "
              f"(random pick {100 * r['random_pick']:.1f}%)")
        if args.data:
            for row in outcome(critic, args):
                print(f"  V after action {row['k']}: success {row['mean_success']:+.3f} / failure "
                      f"{row['mean_failure']:+.3f}, AUC pooled {row['pooled']:.3f}, within a task {row['within']:.3f}"
                      f" ({row['pairs']} pairs)")


if __name__ == "__main__":
    main()
