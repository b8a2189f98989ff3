"""Time per optimizer step and peak memory of OREO vs SFT on the same batch and model, side by side.

Each configuration runs ``agentrl.learner.train`` (the real training loop) in its own subprocess, so every
peak-memory number is that configuration's own: CUDA ``max_memory_allocated`` on a GPU, peak RSS
(``ru_maxrss``, with glibc told to return freed memory: see ``CPU_MALLOC``) on CPU. Step time is the
median of the logged ``step_time_s`` after warm-up steps.

Configurations (policy LoRA + critic LoRA on one frozen base unless ``--full``):

* ``sft``: NLL on the action tokens (the baseline);
* ``oreo``: OREO token level, reference cached (log-probs + top-k for the KL): no reference forward;
* ``oreo-low-memory``: ``oreo`` with ``--low-memory`` (one autograd graph at a time, one more critic forward);
* ``oreo-exact-kl``: OREO with the exact full-vocabulary KL, one reference forward per micro-batch;
* ``dqo``: DQO token level (lambda 1, importance weight on both losses, no KL term): policy + critic;
* ``oreal``: OREAL (token reward model on the critic's adapter, past its warm-up): policy + reward model.

Usage (CPU, a ~5M from-scratch model)::

    PYTHONPATH=. python bench/learn_speed.py
    PYTHONPATH=. python bench/learn_speed.py --device cuda --model ~/.cache/agentrl/models/SmolLM2-135M-Instruct \\
        --batch-size 8 --seq-len 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# On CPU, glibc keeps freed memory mapped (its mmap threshold grows with freed blocks), so peak RSS would
# count memory that was free and reusable. A fixed mmap threshold and no trim delay make RSS follow live
# memory; every configuration runs under the same setting.
CPU_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}

CORPUS = [
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 1, a fridge 1.",
    "Your task is to: put a clean mug in coffeemachine.",
    "Think: I need to find a mug first.\nAction: go to countertop 1",
    "You arrive at countertop 1. On the countertop 1, you see a mug 1, a knife 2, and a bread 1.",
    "Think: I should clean the mug.\nAction: clean mug 1 with sinkbasin 1",
] * 20


def make_data(tokenizer, path: Path, episodes: int, seq_len: int) -> None:
    """Episodes of about ``seq_len`` tokens: alternating observations and ReAct turns, half of them successes."""
    from agentrl.trajectory import TrajectoryWriter
    from agentrl.types import Episode

    with TrajectoryWriter(path) as writer:
        for i in range(episodes):
            messages = [
                {
                    "role": "system",
                    "content": "Solve household tasks. Answer with Think: ... then Action: ...",
                },
                {"role": "user", "content": CORPUS[0] + " " + CORPUS[1]},
            ]
            turn = 0
            while True:
                candidate = messages + [
                    {
                        "role": "assistant",
                        "content": f"Think: step {turn} of task {i}, I look for the mug.\nAction: go to cabinet {turn}",
                    },
                ]
                if (
                    len(
                        tokenizer.apply_chat_template(candidate, tokenize=True, return_dict=True)["input_ids"]
                    )
                    > seq_len
                ):
                    break
                messages = candidate + [{"role": "user", "content": CORPUS[3]}]
                turn += 1
            messages = messages[:-1]
            writer.write(
                Episode(
                    episode_id=f"bench/{i}",
                    task_id=f"t{i // 2}",
                    env_id="bench",
                    split="train",
                    task_type="bench",
                    policy="expert",
                    success=i % 2 == 0,
                    reward=float(i % 2 == 0),
                    messages=messages,
                )  # fmt: skip
            )


def run_one(args: argparse.Namespace) -> dict:
    """One configuration in this process: train, then report step times and peak memory."""
    import torch

    from agentrl.learn_config import LearnConfig as Config
    from agentrl.learner import train

    settings = {
        "sft": dict(algo="sft"),
        "oreo": dict(algo="oreo", kl_topk=args.topk),
        "oreo-exact-kl": dict(algo="oreo", kl_topk=0),
        "oreo-low-memory": dict(algo="oreo", kl_topk=args.topk, low_memory=True),
        "dqo": dict(algo="dqo", kl_topk=args.topk),
        "oreal": dict(algo="oreal", kl_topk=args.topk, oreal_rm_warmup=0),
    }[args.one]
    lora = dict(lora=True, critic_lora=True, lr=1e-4) if not args.full else dict(lr=5e-6)
    out = Path(args.workdir) / args.one
    cfg = Config(
        data=[str(Path(args.workdir) / "data.jsonl")], model=args.model_path, out=str(out), batch_size=args.batch_size,
        max_steps=args.warmup + args.steps, max_length=args.seq_len + 64, device=args.device, log_every=10**6,
        lora_r=args.lora_r, lora_alpha=args.lora_r, gradient_checkpointing=args.gradient_checkpointing, **lora, **settings,
    )  # fmt: skip
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    train(cfg, save=False)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = [m["step_time_s"] for m in metrics[args.warmup :]]
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    tokens = statistics.median(m["tokens_per_s"] for m in metrics[args.warmup :])
    return {"config": args.one, "step_s": statistics.median(times), "peak_mib": peak, "tokens_per_s": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="`tiny` (a ~5M model built here) or a model folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--full", action="store_true", help="full fine-tuning and a separate full critic")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="for every configuration")
    parser.add_argument("--configs", default="sft,oreo,oreo-low-memory,oreo-exact-kl")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args)))
        return

    from agentrl.models import build_tiny_model, load_tokenizer

    workdir = Path(tempfile.mkdtemp(prefix="learn-speed-"))
    if args.model == "tiny":
        model, tokenizer = build_tiny_model(
            CORPUS, vocab_size=2048, hidden_size=256, num_layers=6, num_heads=8
        )
        model.save_pretrained(workdir / "model")
        tokenizer.save_pretrained(workdir / "model")
        model_path = str(workdir / "model")
    else:
        model_path = str(Path(args.model).expanduser())
        tokenizer = load_tokenizer(model_path)
    make_data(tokenizer, workdir / "data.jsonl", episodes=args.batch_size * 4, seq_len=args.seq_len)
    results = []
    for config in args.configs.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            config,
            "--workdir",
            str(workdir),
            "--model-path",
            model_path,
        ]
        for key in ("device", "batch_size", "seq_len", "steps", "warmup", "topk", "lora_r"):
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        cmd += ["--full"] if args.full else []
        cmd += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, **CPU_MALLOC, "PYTHONPATH": str(Path(__file__).parent.parent)},
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{config} failed")
        results.append(json.loads(line[len("RESULT ") :]))
    base = results[0]
    mode = (
        "full fine-tuning, separate full critic"
        if args.full
        else f"LoRA r{args.lora_r} policy + LoRA critic, one frozen base"
    )
    print(
        f"model {args.model}, device {args.device}, batch {args.batch_size} x ~{args.seq_len} tokens, {mode}"
    )
    print(
        f"{'config':<16}{'step s':>10}{'x ' + base['config']:>10}{'peak MiB':>12}{'x ' + base['config']:>10}{'tokens/s':>12}"
    )
    for r in results:
        print(
            f"{r['config']:<16}{r['step_s']:>10.3f}{r['step_s'] / base['step_s']:>10.2f}"
            f"{r['peak_mib']:>12.0f}{r['peak_mib'] / base['peak_mib']:>10.2f}{r['tokens_per_s']:>12.0f}"
        )


if __name__ == "__main__":
    main()
