"""Rollout throughput: episodes/min and generated tokens/s vs the number of parallel envs E, per model.

Runs the real rollout engine (``agentrl.rollout.rollout``) with the ReAct policy and the transformers backend
on a synthetic ALFWorld-like env (in-process, a few microseconds per step, fixed episode length, observations
shaped like ALFWorld's), so the numbers measure generation and batching, not the env. The same episodes run
with E = 1, 2, 4, 8, for each model, side by side in one process; then KV-cache carry on vs off at the largest E.

    PYTHONPATH=. python bench/rollout_speed.py                       # tiny + default model on CPU
    PYTHONPATH=. python bench/rollout_speed.py --device cuda --dtype bfloat16 --envs 1,2,4,8,16,32

Target: throughput(E) >= 0.7 * E * throughput(1) until the hardware is compute-bound.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

try:
    import agentrl.policies  # noqa: F401  (installed, e.g. `pip install -e .`)
except ImportError:  # a source checkout on PYTHONPATH (the GPU box): envs/ and policies/ sit beside agentrl/
    import agentrl

    agentrl.__path__.append(str(Path(__file__).resolve().parents[1]))

RECEPTACLES = [
    "cabinet",
    "countertop",
    "drawer",
    "fridge",
    "microwave",
    "shelf",
    "sinkbasin",
    "stoveburner",
    "coffeemachine",
    "garbagecan",
    "toaster",
    "diningtable",
]
OBJECTS = [
    "mug",
    "apple",
    "knife",
    "plate",
    "egg",
    "potato",
    "spoon",
    "bread",
    "lettuce",
    "tomato",
    "cup",
    "pan",
]


class SyntheticPool:
    """``EnvPool`` API over a synthetic household env: every episode lasts ``steps`` steps and is won."""

    def __init__(self, num_tasks: int, num_envs: int, steps: int):
        self.task_ids = [f"task{k:03d}" for k in range(num_tasks)]
        self.steps = steps
        self.count: dict[int, int] = {}
        self.rng: dict[int, random.Random] = {}

    def _room(self, rng: random.Random) -> str:
        seen = ", ".join(f"a {r} {rng.randint(1, 4)}" for r in rng.sample(RECEPTACLES, 9))
        return f"You are in the middle of a room. Looking quickly around you, you see {seen}."

    def reset(self, requests: dict[int, dict]) -> dict:
        out = {}
        for slot, kwargs in requests.items():
            task = kwargs["options"]["task_id"]
            rng = random.Random(task)
            self.rng[slot], self.count[slot] = rng, 0
            goal = f"put a clean {rng.choice(OBJECTS)} in {rng.choice(RECEPTACLES)}"
            obs = f"-= Welcome to TextWorld, ALFRED! =-\n\n{self._room(rng)}\n\nYour task is to: {goal}."
            out[slot] = (
                obs,
                {
                    "task_id": task,
                    "task_type": "synthetic",
                    "task": goal,
                    "won": False,
                    "admissible_actions": [],
                },
            )
        return out

    def step(self, actions: dict[int, str]) -> dict:
        out = {}
        for slot in actions:
            rng = self.rng[slot]
            self.count[slot] += 1
            things = ", ".join(f"a {o} {rng.randint(1, 3)}" for o in rng.sample(OBJECTS, 3))
            obs = f"You arrive at {rng.choice(RECEPTACLES)} {rng.randint(1, 4)}. On it, you see {things}."
            done = self.count[slot] >= self.steps
            info = {"task_id": "", "task_type": "synthetic", "won": done, "admissible_actions": []}
            out[slot] = (obs, float(done), done, False, info)
        return out

    def close(self) -> None:
        pass


def tiny_model_dir(root: Path, hidden: int, layers: int) -> Path:
    """A from-scratch Llama (random weights) with a tokenizer trained on the env's own text."""
    from agentrl.models import build_tiny_model
    from agentrl.policies.prompts import system_prompt

    pool = SyntheticPool(20, 1, 3)
    texts = [system_prompt("alfworld")]
    for k in range(20):
        texts.append(pool.reset({0: {"options": {"task_id": f"task{k:03d}"}}})[0][0])
        texts.append(pool.step({0: "look"})[0][0])
    model, tokenizer = build_tiny_model(
        texts * 5, vocab_size=2048, hidden_size=hidden, num_layers=layers, num_heads=max(2, hidden // 64)
    )
    path = root / f"tiny-h{hidden}-l{layers}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def measure(backend, num_envs: int, args, carry: bool, out_dir: Path) -> dict:
    from agentrl.rollout import RolloutConfig, rollout

    backend.carry_cache = carry
    backend.clear_cache()
    backend.reset_stats()
    out = out_dir / f"e{num_envs}-{'carry' if carry else 'nocarry'}-{time.monotonic_ns()}.jsonl"
    cfg = RolloutConfig(
        env="alfworld",
        data=str(out_dir),
        policy="react",
        out=str(out),
        num_envs=num_envs,
        episodes=args.episodes,
        max_steps=args.steps,
        max_new_tokens=args.max_new_tokens,
        progress=False,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = rollout(cfg, pool=SyntheticPool(args.episodes, num_envs, args.steps), generator=backend)
    seconds = time.perf_counter() - started
    cpu = (
        time.process_time() - cpu_started
    )  # this process's CPU time: robust to other jobs on a shared machine
    stats = backend.stats
    return {
        "envs": num_envs,
        "carry": carry,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "episodes_per_min": 60 * summary["written"] / seconds,
        "episodes_per_cpu_min": 60 * summary["written"] / cpu,
        "tokens_per_s": stats.generated_tokens / seconds,
        "generated_tokens": stats.generated_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "prefill_tokens": stats.prefill_tokens,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", default="tiny,default", help="comma list: tiny, default, or model folders"
    )
    parser.add_argument("--envs", default="1,2,4,8", help="comma list of parallel env counts")
    parser.add_argument(
        "--episodes", type=int, default=8, help="episodes per measurement (same tasks each time)"
    )
    parser.add_argument("--steps", type=int, default=4, help="steps per episode")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--tiny-hidden", type=int, default=256)
    parser.add_argument("--tiny-layers", type=int, default=6)
    parser.add_argument("--no-carry-compare", action="store_true", help="skip the carry vs no-carry rows")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 avoids oversubscription on a shared, loaded machine)",
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from agentrl.backends.transformers_backend import TransformersBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    envs = [int(e) for e in args.envs.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="agentrl-bench-") as tmp:
        root = Path(tmp)
        for name in args.models.split(","):
            path = str(tiny_model_dir(root, args.tiny_hidden, args.tiny_layers)) if name == "tiny" else name
            backend = TransformersBackend.from_pretrained(path, device=args.device, dtype=args.dtype)
            params = sum(p.numel() for p in backend.model.parameters())
            label = f"{name} ({params / 1e6:.1f}M)"
            measure(
                backend, 1, argparse.Namespace(**{**vars(args), "episodes": 1, "steps": 2}), True, root
            )  # warm-up
            base = None
            for e in envs:
                row = measure(backend, e, args, True, root)
                base = base or row
                row.update(
                    model=label,
                    speedup=row["episodes_per_min"] / base["episodes_per_min"],
                    cpu_speedup=row["episodes_per_cpu_min"] / base["episodes_per_cpu_min"],
                    target=0.7 * e,
                )
                rows.append(row)
                print(_fmt(row), flush=True)
            if not args.no_carry_compare:
                for e in sorted({envs[0], envs[-1]}):
                    row = measure(backend, e, args, False, root)
                    carry_row = next(r for r in rows if r["model"] == label and r["envs"] == e and r["carry"])
                    row.update(
                        model=label,
                        speedup=row["episodes_per_min"] / base["episodes_per_min"],
                        cpu_speedup=row["episodes_per_cpu_min"] / base["episodes_per_cpu_min"],
                        target=0.7 * e,
                        carry_gain=carry_row["episodes_per_min"] / row["episodes_per_min"],
                        carry_cpu_gain=carry_row["episodes_per_cpu_min"] / row["episodes_per_cpu_min"],
                    )
                    rows.append(row)
                    print(_fmt(row), flush=True)
            del backend
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    print()
    print(table(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _fmt(row: dict) -> str:
    return (
        f"{row['model']:<22} E={row['envs']:<3} carry={'on ' if row['carry'] else 'off'} "
        f"{row['episodes_per_min']:8.2f} ep/min {row['tokens_per_s']:8.1f} tok/s  x{row['speedup']:.2f} "
        f"(target x{row['target']:.1f}) | {row['episodes_per_cpu_min']:8.2f} ep/cpu-min x{row['cpu_speedup']:.2f} | prefill {row['prefill_tokens']}/{row['prompt_tokens']} tokens"
    )


def table(rows: list[dict], args) -> str:
    import platform

    import torch

    head = (
        f"device={args.device} dtype={args.dtype} torch threads={torch.get_num_threads()} "
        f"python={platform.python_version()} episodes={args.episodes} steps={args.steps} "
        f"max_new_tokens={args.max_new_tokens}"
    )
    lines = [
        head,
        "",
        "| model | E | KV carry | episodes/min | gen tokens/s | x vs E=1 | episodes/CPU-min | x vs E=1 (CPU) "
        "| target 0.7·E | prefill / prompt tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = (
            f" (carry gives x{r['carry_gain']:.2f} wall, x{r['carry_cpu_gain']:.2f} CPU)"
            if "carry_gain" in r
            else ""
        )
        lines.append(
            f"| {r['model']} | {r['envs']} | {'on' if r['carry'] else 'off'}{gain} | "
            f"{r['episodes_per_min']:.2f} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f} | "
            f"{r['episodes_per_cpu_min']:.2f} | {r['cpu_speedup']:.2f} | "
            f"{r['target']:.1f} | {r['prefill_tokens']} / {r['prompt_tokens']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
