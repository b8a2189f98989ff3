"""How many steps alfworld's hand-coded expert needs per task type, against a demonstrations file.

    PYTHONPATH=. .venv/bin/python bench/alfworld_levers/expert_steps.py --data DATA --split train \
        --demonstrations demos.jsonl [--types pick_two_obj_and_place]

Plays the expert as ``agentrl/ALFWorld-v0`` does (``envs/alfworld/expert.py``) on every task of ``--data``
(50-step cap) and prints, per task type: tasks won, mean steps, proposals that were not admissible, and the
demonstrations' mean steps on the same tasks. Written to measure the "move"/"put" tracking fix (RESULTS.md).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from agentrl.envs.alfworld.engine import start_game
from agentrl.envs.alfworld.expert import HandCodedExpert


def play(game: Path, cap: int) -> tuple[bool, int, int]:
    engine = start_game(str(game), write_cache=False)
    state = engine.reset()
    expert = HandCodedExpert(str(game))
    action = expert.start(state)
    for step in range(1, cap + 1):
        state, _, _ = engine.step(action)
        if state["won"]:
            return True, step, expert.rejected
        action = expert.next_action(state, action)
    return False, cap, expert.rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--demonstrations", help="episodes (JSONL) whose steps to compare, by task_id")
    parser.add_argument("--types", default="", help="comma-separated task types (default: all)")
    parser.add_argument("--cap", type=int, default=50)
    args = parser.parse_args()
    root = Path(args.data) / "json_2.1.1" / args.split
    demos = {}
    if args.demonstrations:
        for line in open(args.demonstrations):
            e = json.loads(line)
            demos[e["task_id"]] = len(e["steps"])
    types = set(filter(None, args.types.split(",")))
    rows = collections.defaultdict(lambda: [0, 0, 0, 0, [], []])  # tasks, won, steps, rejected, demo steps, ids
    for game in sorted(root.glob("*/*/game.tw-pddl")):
        task_type = game.parent.parent.name.split("-")[0]
        if types and task_type not in types:
            continue
        won, steps, rejected = play(game, args.cap)
        row = rows[task_type]
        row[0] += 1
        row[1] += won
        row[2] += steps
        row[3] += rejected
        task_id = f"{game.parent.parent.name}/{game.parent.name}"
        if task_id in demos:
            row[4].append(demos[task_id])
    print("| task type | tasks | expert wins | expert mean steps | not-admissible proposals | demonstrations' mean steps |")
    print("|---|---|---|---|---|---|")
    for task_type, (n, won, steps, rejected, demo, _) in sorted(rows.items()):
        shown = f"{sum(demo) / len(demo):.1f} ({len(demo)})" if demo else "-"
        print(f"| {task_type} | {n} | {won} | {steps / n:.1f} | {rejected} | {shown} |")


if __name__ == "__main__":
    main()
