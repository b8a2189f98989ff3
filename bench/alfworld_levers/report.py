"""Reads the lever study's held-out evaluations (DAgger rollouts with beta 0: the model acts, the expert labels).

Per file: success with a Wilson 95% interval, by task type, on-policy agreement with the expert's label, the share of
repeated commands, and the `take` decision: at states whose label is `take <obj> from <recep>`, how often the model
took that object. `python bench/alfworld_levers/report.py RUN/eval/*.jsonl`
"""

from __future__ import annotations

import sys

from agentrl.evaluation import summarize
from agentrl.trajectory import iter_episodes


def report(path: str) -> str:
    episodes = list(iter_episodes(path))
    results = summarize(episodes)
    lo, hi = results["ci95"]
    agree = steps = repeats = takes = took = 0
    for ep in episodes:
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
                      f"{r['successes']}/{r['n']}" for t, r in sorted(results["by_task_type"].items()))
    return (f"{path}: {results['successes']}/{results['episodes']} = {100 * results['success_rate']:.1f}% "
            f"[{100 * lo:.1f}, {100 * hi:.1f}]; agreement {100 * agree / steps:.0f}%, repeated commands "
            f"{100 * repeats / steps:.0f}%, take {took}/{takes}; mean steps {steps / len(episodes):.1f}; {types}")

if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(report(name))
