"""How often the arithmetic a policy writes is right: every ``a op b = c`` in its steps, checked.

    .venv/bin/python bench/math_mini/arith_check.py runs/math_mini/main/results/gsm-symbolic/*.jsonl

Prints, per trajectory file: episodes, successes, mean steps, share of episodes that end with ``####``,
equations found, share of them that are correct, and share of final answers equal to the reference.
A diagnostic of *why* a small model fails GSM-style problems (format vs arithmetic), not a metric of agentrl.
"""

from __future__ import annotations

import re
import sys

from agentrl.trajectory import read_episodes

NUM = r"\d+(?:\.\d+)?"
EQUATION = re.compile(rf"({NUM})\s*([-+*/x×])\s*({NUM})\s*=\s*({NUM})")


def check(a: str, op: str, b: str, c: str) -> bool:
    x, y, z = float(a), float(b), float(c)
    value = {"+": x + y, "-": x - y, "*": x * y, "x": x * y, "×": x * y, "/": x / y if y else float("nan")}[
        op
    ]
    return abs(value - z) < 1e-6 * max(1.0, abs(z)) or abs(round(value, 2) - z) < 1e-9


def stats(path: str) -> dict[str, float]:
    episodes = read_episodes(path)
    equations = correct = finished = 0
    for ep in episodes:
        actions = [s.action for s in ep.steps]
        finished += any("####" in a for a in actions)
        for a in actions:
            for m in EQUATION.finditer(a):
                equations += 1
                correct += check(*m.groups())
    n = max(1, len(episodes))
    return {"episodes": len(episodes), "successes": sum(e.success for e in episodes),
            "mean_steps": sum(len(e.steps) for e in episodes) / n, "answered": finished / n,
            "equations": equations, "equations_correct": correct / max(1, equations)}  # fmt: skip


def main(paths: list[str]) -> int:
    print(
        "| trajectories | episodes | success | mean steps | ends with #### | equations | correct equations |"
    )
    print("|---|---|---|---|---|---|---|")
    for path in paths:
        s = stats(path)
        print(
            f"| {path} | {s['episodes']} | {s['successes']} | {s['mean_steps']:.1f} | {100 * s['answered']:.0f}% "
            f"| {s['equations']} | {100 * s['equations_correct']:.1f}% |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
