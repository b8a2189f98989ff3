"""ALFWorld mini-benchmark: the OREO paper's Table 2 / Figure 4 protocol, sized for a 2-core CPU.

A configuration of the offline-RL recipe (``agentrl/recipes``); every size is in ``config.yaml`` (``small.yaml``:
small rooms), flags override it (``--seeds 0``, ``--learners.DPO.lr 2e-5``, ``--only '*: RS'``):

1. generate ``train``, ``valid_seen`` (train rooms) and ``valid_unseen`` (unseen rooms) tasks, every one verified by
   alfworld's hand-coded expert; one expert demonstration per train task;
2. per seed: a from-scratch model whose tokenizer is fitted to the demonstrations, SFT on them;
3. per seed: ``rollouts.samples_per_task`` sampled rollouts of the SFT policy on every train task (the paper: 5);
4. per seed, each from the SFT policy: RS (SFT on the successes), DPO (success vs failure pairs), OREO (policy +
   critic), each on demonstrations + rollouts;
5. per seed: SFT, RS, DPO and OREO greedy, and OREO + best-of-K with the OREO critic, on both splits;
6. success mean ± std over seeds per split and method, and per task type: ``summary.md``, ``summary.json``,
   ``summary.png``.

Every stage is skipped once its output exists, so an interrupted run continues where it stopped:
``python bench/alfworld_mini/run.py --config bench/alfworld_mini/config.yaml`` (= ``agentrl recipe --config ...``).
"""

from __future__ import annotations

from pathlib import Path

from agentrl.cli.recipe import main_with

CONFIG = Path(__file__).with_name("config.yaml")


def main(argv: list[str] | None = None) -> int:
    return main_with(CONFIG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
