"""The continuation set of alfworld-agent v2: every successful pick-two demonstration, and as many of the other
types' (drawn with seed 0), shuffled with seed 1.

    python bench/alfworld_levers/two_obj_mix.py demos_fixed.jsonl demos_cont.jsonl
"""

import json
import random
import sys

episodes = [json.loads(line) for line in open(sys.argv[1])]
two = [e for e in episodes if e["success"] and e["task_type"] == "pick_two_obj_and_place"]
rest = [e for e in episodes if e["success"] and e["task_type"] != "pick_two_obj_and_place"]
picked = two + random.Random(0).sample(rest, len(two))
random.Random(1).shuffle(picked)
with open(sys.argv[2], "w") as out:
    out.writelines(json.dumps(e) + "\n" for e in picked)
print(f"{len(two)} pick-two + {len(two)} others -> {sys.argv[2]}")
