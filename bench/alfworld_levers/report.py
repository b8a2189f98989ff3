"""Reads the lever study's held-out evaluations (DAgger rollouts with beta 0: the model acts, the expert labels).

Per file: success with a Wilson 95% interval, by task type, on-policy agreement with the expert's label, the share of
repeated commands, and the `take` decision: at states whose label is `take <obj> from <recep>`, how often the model
took that object. `python bench/alfworld_levers/report.py RUN/eval/*.jsonl`
"""

from __future__ import annotations

import sys
from collections import defaultdict

from agentrl.evaluation import wilson_interval
from agentrl.trajectory import iter_episodes


def report(path: str) -> str:
    episodes = list(iter_episodes(path))
    wins = sum(bool(ep.success) for ep in episodes)
    lo, hi = wilson_interval(wins, len(episodes))
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    agree = steps = repeats = takes = took = 0
    for ep in episodes:
        by_type[ep.task_type or "?"][0] += bool(ep.success)
        by_type[ep.task_type or "?"][1] += 1
        seen: set[str] = set()
        for step in ep.steps:
            steps += 1
            agree += step.action == step.label
            repeats += step.action in seen
            seen.add(step.action)
            if step.label and step.label.startswith("take "):
                takes += 1
                took += step.action == step.label
    types = ", ".join(f"{t.replace('pick_', '').replace('_then_place_in_recep', '').replace('_and_place', '')} "
                      f"{w}/{n}" for t, (w, n) in sorted(by_type.items()))
    return (f"{path}: {wins}/{len(episodes)} = {100 * wins / len(episodes):.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]; "
            f"agreement {100 * agree / steps:.0f}%, repeated commands {100 * repeats / steps:.0f}%, "
            f"take {took}/{takes}; mean steps {steps / len(episodes):.1f}; {types}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(report(name))
