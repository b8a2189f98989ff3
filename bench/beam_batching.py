"""Step-level beam search over many math tasks: what an env copy costs, and tasks searched together.

First, the copy every surviving candidate makes of its parent's env: `copy.deepcopy` of a chain-sum env
mid-episode (which shares the read-only problem set, `MathEnv.__deepcopy__`) against a deep copy of all of its
state, the problem set included (what `copy.deepcopy` did before). Then

`agentrl eval --beam B` on chain-sum test problems, the same model, critic and problems, once with
`--num-envs 1` (each task's B beams share a generator and a critic call, the tasks run one after another) and
once with `--num-envs E` (the beams of E tasks share each call, `agentrl.search.beam_search_many`). Both runs
write their episodes; the ratio of wall times is printed side by side (the machine is shared and noisy).
Defaults are bench/math_mini's model shape (a from-scratch Llama, hidden 128, 4 layers) with a random value head:
the search's cost, not its accuracy, is measured (an untrained model writes its full 32 tokens per step, the
most expensive case).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/beam_batching.py                 # B=5, 16 problems, E=8
    PYTHONPATH=. python bench/beam_batching.py --beam 3 --problems 32 --envs 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def build(folder: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    """A tiny math model fitted on chain-sum text and a critic on its backbone (random value head)."""
    import torch

    from agentrl.critic import ValueModel
    from agentrl.models import build_tiny_model, load_causal_lm

    corpus = [f"Question: What is {a} + {b} - {c}?\n{a} + {b} = {a + b}\n{a + b} - {c} = {a + b - c}\n#### {a + b - c}"
              for a in range(10) for b in range(10) for c in range(3)]  # fmt: skip
    model, tokenizer = build_tiny_model(corpus, vocab_size=512, hidden_size=hidden, num_layers=layers, num_heads=4,
                                        split_digits=True)  # fmt: skip
    policy = folder / "policy"
    model.save_pretrained(policy)
    tokenizer.save_pretrained(policy)
    torch.manual_seed(0)
    critic = ValueModel(load_causal_lm(str(policy)), hidden_size=hidden)
    torch.nn.init.normal_(critic.value_head.weight, std=0.02)
    critic.trained_at = {"level": "step", "afterstates": True}
    critic.save_pretrained(folder / "critic")
    return policy, folder / "critic"


def copy_cost(repeats: int = 20) -> tuple[float, float]:
    """Seconds per copy of a mid-episode chain-sum env: sharing its problems, and copying everything."""
    import copy

    import gymnasium as gym

    import agentrl.envs  # noqa: F401 - registers agentrl/Math-v0

    env = gym.make("agentrl/Math-v0", dataset="chain-sum", split="test")
    env.reset(options={"task_id": env.unwrapped.task_ids[0]})
    env.step("1 + 2 = 3")
    timings = []
    for copy_once in (lambda: copy.deepcopy(env), lambda: copy.deepcopy(env.unwrapped.__dict__)):
        start = time.perf_counter()
        for _ in range(repeats):
            copy_once()
        timings.append((time.perf_counter() - start) / repeats)
    return timings[0], timings[1]


def run(policy: Path, critic: Path, envs: int, args: argparse.Namespace, out: Path) -> float:
    """Wall seconds of one `agentrl eval --beam` run over the problems with ``envs`` tasks in flight."""
    from agentrl.cli import main

    argv = ["eval", "--env", "math", "--dataset", "chain-sum", "--policy", "react", "--model", str(policy),
            "--critic", str(critic), "--beam", str(args.beam), "--episodes", str(args.problems), "--num-envs",
            str(envs), "--max-steps", "6", "--max-new-tokens", "32", "--temperature", "1.0", "--no-example",
            "--out", str(out / f"e{envs}.json"), "--trajectories", str(out / f"e{envs}.jsonl"), "--no-progress"]
    start = time.perf_counter()
    if main(argv) != 0:
        raise SystemExit(f"agentrl eval failed: {' '.join(argv)}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--envs", type=int, default=8, help="tasks searched together in the batched run")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    shared, everything = copy_cost()
    print(f"env copy: {shared * 1e3:.2f} ms sharing the problem set, {everything * 1e3:.1f} ms copying it too "
          f"({everything / shared:.0f}x)")
    folder = Path(tempfile.mkdtemp(prefix="bench-beam-"))
    policy, critic = build(folder, args.hidden, args.layers)
    one = run(policy, critic, 1, args, folder)
    many = run(policy, critic, args.envs, args, folder)
    steps = {envs: sum(json.loads(line)["meta"]["search_steps"] for line in open(folder / f"e{envs}.jsonl"))
             for envs in (1, args.envs)}  # fmt: skip
    print(f"beam B={args.beam}, {args.problems} chain-sum problems, hidden {args.hidden} x {args.layers} layers")
    print(f"  one task at a time:      {one:7.1f} s  ({steps[1]} search steps)")
    print(f"  {args.envs:2d} tasks searched together: {many:7.1f} s  ({steps[args.envs]} search steps)")
    print(f"  speed-up: {one / many:.2f}x")


if __name__ == "__main__":
    main()
