"""Reads the lever study's held-out evaluations (DAgger rollouts with beta 0: the model acts, the expert labels).

Per file: success with a Wilson 95% interval, by task type, on-policy agreement with the expert's label, the share of
repeated commands, and the `take` decision: at states whose label is `take <obj> from <recep>`, how often the model
took that object. `python bench/alfworld_levers/report.py RUN/eval/*.jsonl`; `--paired A.jsonl B.jsonl` adds the
paired bootstrap of A - B over the tasks both files hold (`agentrl.paired`); `--tsv A.jsonl OUT.tsv` writes A's
per-task outcomes (the `outcomes/` files: task, type, success, steps).
"""

from __future__ import annotations

import sys

from agentrl.evaluation import summarize
from agentrl.paired import outcomes, paired_bootstrap
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


def paired(a: str, b: str) -> str:
    """A - B in points over the tasks both evaluations ran, with its bootstrap interval and discordant counts."""
    tasks = {path: {ep: v for (_, ep), v in outcomes({0: path}).items()} for path in (a, b)}
    c = paired_bootstrap(tasks[a], tasks[b])
    lo, hi = c.ci95
    return (f"{a} - {b}: {100 * c.delta:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] over {c.units} tasks, "
            f"only A {c.a_only}, only B {c.b_only}, P(delta <= 0) {c.p_not_better:.3f}")


def write_tsv(path: str, out: str) -> None:
    rows = ["task_id\ttask_type\tsuccess\tsteps"]
    rows += [f"{ep.task_id}\t{ep.task_type}\t{int(bool(ep.success))}\t{len(ep.steps)}" for ep in iter_episodes(path)]
    with open(out, "w") as f:
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--tsv" in args:
        i = args.index("--tsv")
        write_tsv(args[i + 1], args[i + 2])
        args = args[:i] + args[i + 3:]
    if "--paired" in args:
        i = args.index("--paired")
        print(paired(args[i + 1], args[i + 2]))
        args = args[:i] + args[i + 3:]
    for name in args:
        print(report(name))
