"""`make bench`: runs every benchmark in this folder one after another (never in parallel: they time the CPU).

Each script prints its own table of ratios measured side by side in one run; bench/RESULTS.md records the
numbers with the machine and the command. Pass script names to run a subset: `python bench/run_all.py learn_speed`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["env_speed", "rollout_speed", "learn_speed", "bestofk_speed"]


def main(argv: list[str]) -> int:
    names = argv or BENCHES
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py")], cwd=HERE.parent)
        print(f"=== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
