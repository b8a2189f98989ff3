"""Probe: does a tiny from-scratch model learn to copy names if it cannot memorise them? (negative so far)

Writes each demonstration of IN plus K renamed copies to OUT: object types are swapped for other object types of
the file and every instance renumbered ("mug 2" -> "cup 5"), the same way in every message of an episode;
receptacle types (those the first observation lists) and lamps keep their type. Results and the commands that
used it: bench/RESULTS.md, "ALFWorld mini-benchmark", copy probes.

Usage: python bench/alfworld_mini/rename_copies.py IN.jsonl OUT.jsonl K
"""

import json
import random
import re
import sys

PAIR = re.compile(r"\b([a-z]+) (\d+)\b")
LAMPS = {"desklamp", "floorlamp"}


def receptacles(ep: dict) -> set[str]:
    return {n for n, _ in PAIR.findall(ep["messages"][1]["content"])}


def main() -> None:
    src, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    eps = [json.loads(line) for line in open(src)]
    pool = set()
    for ep in eps:
        r = receptacles(ep)
        for m in ep["messages"][1:]:
            pool |= {n for n, _ in PAIR.findall(m["content"]) if n not in r and n not in LAMPS}
    pool = sorted(pool)
    rng = random.Random(0)
    out = []
    for ep in eps:
        out.append(ep)
        r = receptacles(ep)
        used: dict[str, set[int]] = {}
        for m in ep["messages"][1:]:
            for n, d in PAIR.findall(m["content"]):
                used.setdefault(n, set()).add(int(d))
        objs = sorted(n for n in used if n not in r and n not in LAMPS)
        for v in range(k):
            names = dict(zip(objs, rng.sample(pool, len(objs)), strict=True))
            nums = {}
            for n, ds in used.items():
                ds = sorted(ds)
                target = rng.sample(ds, len(ds)) if n in r else rng.sample(range(1, max(ds) + 4), len(ds))
                nums[n] = dict(zip(ds, target, strict=True))
            words = sorted(set(used) | set(objs), key=len, reverse=True)
            rx = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")(?: (\d+))?\b")

            def sub(mt: re.Match, names=names, nums=nums) -> str:
                n, d = mt.group(1), mt.group(2)
                return (
                    names.get(n, n)
                    if d is None
                    else f"{names.get(n, n)} {nums.get(n, {}).get(int(d), int(d))}"
                )

            copy = dict(ep)
            copy["messages"] = [ep["messages"][0]] + [
                {**m, "content": rx.sub(sub, m["content"])} for m in ep["messages"][1:]
            ]
            copy["episode_id"] = ep["episode_id"] + f"/aug{v}"
            out.append(copy)
    with open(dst, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in out)
    print(f"{len(out)} episodes -> {dst}")


if __name__ == "__main__":
    main()
