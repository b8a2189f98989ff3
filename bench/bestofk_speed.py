"""Cost per agent step of best-of-K (K=1,3,5) against greedy ReAct decoding, measured side by side.

Each method runs the same scripted ALFWorld-like episode in E parallel contexts for T steps: one batched
policy call per step, then the canned observation is appended (no env, so only model time is measured).
Greedy = ReAct at temperature 0 (one sample per env). Best-of-K = ReAct sampling K per env in one generator
call (``n=K``) + one batched critic forward over all E*K candidates. Every method gets a fresh backend
(fresh KV caches); repeats report the minimum and median seconds per step; the ratio uses the medians.
Target (issue 6): best-of-K < (1 + 0.3 K) x greedy on CPU with the tiny model.

    PYTHONPATH=. python bench/bestofk_speed.py                       # tiny from-scratch model, CPU
    PYTHONPATH=. python bench/bestofk_speed.py --model DIR --critic DIR --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

ROOM = ("You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2, a countertop 1, "
        "a drawer 1, a fridge 1, a microwave 1, a shelf 1, a sinkbasin 1, and a stoveburner 1.")
TASK = "put a clean mug in coffeemachine."
ANSWERS = [
    "You arrive at countertop 1. On the countertop 1, you see a mug 1, a spoon 2, and a bread 1.",
    "You pick up the mug 1 from the countertop 1.",
    "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing.",
    "You clean the mug 1 using the sinkbasin 1.",
    "You arrive at coffeemachine 1. On the coffeemachine 1, you see nothing.",
    "Nothing happens.",
    "You arrive at cabinet 1. The cabinet 1 is closed.",
    "You open the cabinet 1. The cabinet 1 is open. In it, you see a cup 2.",
]
CORPUS = [ROOM, TASK, *ANSWERS, "Think: I need a mug.\nAction: go to countertop 1",
          "Action: take mug 1 from countertop 1", "Action: clean mug 1 with sinkbasin 1",
          "Action: move mug 1 to coffeemachine 1"] * 8


def build(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(model folder, tokenizer, critic ValueModel) on the chosen device."""
    import tempfile

    import torch

    from agentrl.critic import ValueModel
    from agentrl.models import build_tiny_model, load_causal_lm, load_tokenizer

    dtype = getattr(torch, args.dtype)
    if args.model:
        folder = args.model
        tokenizer = load_tokenizer(folder)
    else:
        model, tokenizer = build_tiny_model(CORPUS, vocab_size=1024, hidden_size=args.hidden, num_layers=args.layers,
                                            num_heads=4)
        folder = tempfile.mkdtemp(prefix="bench-bestofk-")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    if args.critic:
        critic = ValueModel.from_pretrained(args.critic, dtype=dtype, device=args.device)
    else:
        backbone = load_causal_lm(folder, dtype=dtype, device=args.device)
        critic = ValueModel(backbone, backbone.config.hidden_size).to(device=args.device)
        torch.nn.init.normal_(critic.value_head.weight, std=0.02)
        critic = critic.eval()
    return folder, tokenizer, critic


def run_method(folder: str, tokenizer: Any, critic: Any, k: int | None, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds per step of one method (k=None: greedy ReAct), and the part of it spent generating."""
    import torch

    from agentrl.backends.base import Sampling
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.policies.best_of_k import BestOfK, CriticScorer
    from agentrl.policies.react import ReActPolicy

    backend = TransformersBackend.from_pretrained(folder, device=args.device, dtype=args.dtype)
    temperature = 0.0 if k is None else 1.0
    policy: Any = ReActPolicy(backend, Sampling(temperature=temperature, max_new_tokens=args.new_tokens, seed=0))
    if k is not None:
        policy = BestOfK(policy, CriticScorer(critic, tokenizer), k=k)
    generating = [0.0]
    generate = backend.generate

    def timed_generate(*a: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return generate(*a, **kw)
        finally:
            generating[0] += time.perf_counter() - start

    backend.generate = timed_generate  # type: ignore[method-assign]
    info = {"task": TASK, "admissible_actions": []}
    contexts = [policy.begin(i, f"{ROOM}\n\nYour task is to: {TASK}", info, "alfworld") for i in range(args.envs)]
    elapsed = 0.0
    for t in range(args.steps):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()  # time the step, not the queue
        start = time.perf_counter()
        decisions = policy.act(contexts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        for ctx, decision in zip(contexts, decisions, strict=True):
            policy.observe(ctx, decision, ANSWERS[t % len(ANSWERS)], info)
    return elapsed / args.steps, generating[0] / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="policy model folder (default: a tiny from-scratch Llama)")
    parser.add_argument("--critic", help="critic folder (default: the policy backbone + a random value head)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--hidden", type=int, default=128, help="tiny model hidden size")
    parser.add_argument("--layers", type=int, default=4, help="tiny model layers")
    parser.add_argument("--envs", type=int, default=4, help="parallel contexts")
    parser.add_argument("--steps", type=int, default=8, help="agent steps per episode")
    parser.add_argument("--new-tokens", type=int, default=24, help="tokens generated per turn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", default="1,3,5")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 keeps timings stable on a shared machine)")
    args = parser.parse_args()

    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder, tokenizer, critic = build(args)
    ks = [int(k) for k in args.ks.split(",")]
    methods: list[int | None] = [None, *ks]
    times: dict[int | None, list[float]] = {m: [] for m in methods}
    gen: dict[int | None, list[float]] = {m: [] for m in methods}
    for m in (None, ks[0]):  # warm-up of both models (allocations, kernels)
        run_method(folder, tokenizer, critic, m, args)
    for _ in range(args.repeats):
        for m in methods:  # interleaved, so drift in machine load hits every method alike
            total, generating = run_method(folder, tokenizer, critic, m, args)
            times[m].append(total)
            gen[m].append(generating)
            print(f"  {'greedy' if m is None else f'best-of-{m}'}: {total:.4f} s/step ({generating:.4f} generating)",
                  file=sys.stderr, flush=True)
    greedy = statistics.median(times[None])
    print(f"device {args.device} {args.dtype} ({torch.get_num_threads()} threads), model {args.model or f'tiny hidden {args.hidden} x {args.layers} layers'}, "
          f"{args.envs} envs x {args.steps} steps, {args.new_tokens} new tokens/turn, {args.repeats} repeats")
    print(f"{'method':<10} {'min s/step':>11} {'median s/step':>14} {'x greedy':>9} {'target':>7}  ok"
          f"  {'generate x':>10} {'critic+rest x':>13}")
    for m in methods:
        med = statistics.median(times[m])
        ratio = med / greedy
        target = "" if m is None else f"{1 + 0.3 * m:.1f}"
        ok = "" if m is None else ("yes" if ratio < 1 + 0.3 * m else "NO")
        name = "greedy" if m is None else f"best-of-{m}"
        g = statistics.median(gen[m]) / greedy
        print(f"{name:<10} {min(times[m]):>11.4f} {med:>14.4f} {ratio:>9.2f} {target:>7}  {ok:<3}"
              f" {g:>10.2f} {ratio - g:>13.2f}")


if __name__ == "__main__":
    main()
