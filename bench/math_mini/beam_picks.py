"""Whose pick is right at a beam step: the critic's, the most-sampled candidate's, or a uniform one's?

    python bench/math_mini/beam_picks.py RESULTS/chain-sum/OREO_beam_B3.jsonl RESULTS/chain-sum/OREO_beam_B5.jsonl

Over the beam steps whose recorded candidates (distinct actions, ``samples`` = how often each was drawn) hold
both an arithmetically right ``a op b = c`` line and a wrong one, prints how often the highest-valued candidate is
right, how often the most-sampled one is, the mean share of right candidates among the distinct ones (a uniform
pick over distinct candidates) and the share of right samples (one plain sample). Chain sums only (integer ``+``
and ``-``). A diagnostic of bench/math_mini/RESULTS.md, not a metric of agentrl.
"""

from __future__ import annotations

import json
import re
import sys

EQUATION = re.compile(r"\s*(-?\d+)\s*([-+])\s*(-?\d+)\s*=\s*(-?\d+)\s*")


def arithmetic_ok(action: str) -> bool | None:
    """True/False for an ``a op b = c`` line, None when the line is not one (e.g. the final ``#### N``)."""
    m = EQUATION.fullmatch(action)
    if m is None:
        return None
    a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
    return (a + b if op == "+" else a - b) == c


def picks(path: str) -> dict[str, float]:
    """The four rates of the module docstring over one trajectory file's mixed beam steps."""
    states = critic = most = uniform = sample = 0.0
    with open(path) as f:
        for line in f:
            for step in json.loads(line)["steps"]:
                cands = step.get("candidates") or []
                labels = [arithmetic_ok(c["action"]) for c in cands]
                if None in labels or True not in labels or False not in labels:
                    continue
                right = [bool(label) for label in labels]
                states += 1
                critic += right[max(range(len(cands)), key=lambda i: cands[i]["value"])]
                most += right[max(range(len(cands)), key=lambda i: cands[i]["samples"])]
                uniform += sum(right) / len(right)
                sample += sum(c["samples"] for c, r in zip(cands, right, strict=True) if r) / sum(
                    c["samples"] for c in cands
                )
    n = max(states, 1)
    return {"states": states, "critic": critic / n, "most_sampled": most / n, "uniform": uniform / n,
            "one_sample": sample / n}  # fmt: skip


if __name__ == "__main__":
    for path in sys.argv[1:]:
        r = picks(path)
        print(
            f"{path}: {int(r['states'])} mixed beam steps; right pick: critic {r['critic']:.3f}, most-sampled "
            f"{r['most_sampled']:.3f}, uniform over distinct {r['uniform']:.3f}, one sample {r['one_sample']:.3f}"
        )
