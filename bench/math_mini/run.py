"""bench/math_mini: the OREO math protocol on a CPU-sized model, scripted and resumable.

A configuration of the offline-RL recipe (``agentrl/recipes``): GSM-Symbolic (or chain-sum) train problems ->
expert (reference-solution) demonstrations -> tiny from-scratch model fitted on that text -> SFT -> sampled
SFT-policy rollouts (successes and failures) -> step-level OREO (policy + critic) -> evaluation on the dataset's
test split and the 100 real GSM8K test problems: SFT greedy, OREO greedy and OREO + critic-guided step beam search
with B = 1, 3, 5.

    .venv/bin/python bench/math_mini/run.py                      # bench/math_mini/config.yaml
    .venv/bin/python bench/math_mini/run.py --config my.yaml --out runs/math_mini/other --evaluations.'OREO beam B={b}'.beam '[1, 3]'
    .venv/bin/python bench/math_mini/run.py --config bench/math_mini/chain_sum.yaml   # running sums, 3-4 terms

A stage is skipped once its output exists (rollouts and evaluations resume their JSONL files episode by episode,
learning resumes from its last checkpoint), so rerunning after an interruption loses nothing. Outputs under
``out``: ``seed0/results/<dataset>/<method>.json`` (+ ``.jsonl`` episodes), ``summary.md`` (the method x dataset
table with Wilson 95% CIs), ``summary.json`` (rates, CIs, stage wall times), ``summary.png``.
"""

from __future__ import annotations

from pathlib import Path

from agentrl.cli.recipe import main_with

CONFIG = Path(__file__).with_name("config.yaml")


def main(argv: list[str] | None = None) -> int:
    return main_with(CONFIG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
