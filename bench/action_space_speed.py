"""Cost per agent step of an admissible action space and of best-of-K over distinct commands, side by side.

Every method plays the same scripted ALFWorld-like episode in E parallel contexts for T steps (one batched policy
call per step, then a canned observation with its admissible commands; no env, so only model time is measured),
each on a fresh backend. Methods:

* ``free``: greedy ReAct, the model writes thought and command (the baseline, "a free greedy step");
* ``admissible``: the thought is generated freely up to ``Action:``, then every admissible command is scored in one
  prefix-shared pass on the carried KV cache (``agentrl.backends.choices``, the library's way);
* ``trie``: the same thought, then the command decoded greedily through a token trie of the admissible commands
  (one forward per command token; the alternative the library does not keep);
* ``best-of-K``: the policy's top-K distinct admissible commands from the same pass, scored by a critic;
* with ``--thoughts off`` all of them write thought-free ``Action: ...`` turns.

Repeats are interleaved (machine-load drift hits every method alike); ratios use medians. Targets (issue 20): an
admissible step <= 1.3x a free greedy step, best-of-5 over distinct candidates <= 2x.

    PYTHONPATH=. python bench/action_space_speed.py                   # tiny from-scratch model, CPU
    PYTHONPATH=. python bench/action_space_speed.py --model default --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RECEPTACLES = ["cabinet 1", "cabinet 2", "cabinet 3", "countertop 1", "countertop 2", "drawer 1", "drawer 2",
               "fridge 1", "microwave 1", "shelf 1", "sinkbasin 1", "stoveburner 1", "coffeemachine 1", "toaster 1"]
ROOM = ("You are in the middle of a room. Looking quickly around you, you see "
        + ", ".join(f"a {r}" for r in RECEPTACLES) + ".")
TASK = "put a clean mug in coffeemachine."
ANSWERS = [
    ("You arrive at countertop 1. On the countertop 1, you see a mug 1, a spoon 2, and a bread 1.", "countertop 1",
     ["mug 1", "spoon 2", "bread 1"]),
    ("You pick up the mug 1 from the countertop 1.", "countertop 1", ["spoon 2", "bread 1"]),
    ("You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing.", "sinkbasin 1", []),
    ("You clean the mug 1 using the sinkbasin 1.", "sinkbasin 1", []),
    ("You arrive at coffeemachine 1. On the coffeemachine 1, you see nothing.", "coffeemachine 1", []),
    ("Nothing happens.", "coffeemachine 1", []),
    ("You arrive at cabinet 1. The cabinet 1 is closed.", "cabinet 1", []),
    ("You open the cabinet 1. The cabinet 1 is open. In it, you see a cup 2.", "cabinet 1", ["cup 2"]),
]
CORPUS = [ROOM, TASK, *(a for a, _, _ in ANSWERS), "Think: I need a mug.\nAction: go to countertop 1",
          "Action: take mug 1 from countertop 1", "Action: clean mug 1 with sinkbasin 1",
          "Action: move mug 1 to coffeemachine 1"] * 8


def admissible(at: str, objects: list[str]) -> list[str]:
    """ALFWorld-like admissible commands at a receptacle: ~20-25 of them, as in a medium room."""
    commands = [f"go to {r}" for r in RECEPTACLES if r != at]
    commands += [f"take {o} from {at}" for o in objects] + [f"examine {at}", "inventory", "look"]
    if at.split()[0] in ("cabinet", "drawer", "fridge", "microwave"):
        commands += [f"open {at}", f"close {at}"]
    return commands


EXPERT = ["go to countertop 1", "take mug 1 from countertop 1", "go to sinkbasin 1", "clean mug 1 with sinkbasin 1",
          "go to coffeemachine 1", "move mug 1 to coffeemachine 1", "go to cabinet 1", "open cabinet 1"]


def fit(model: Any, tokenizer: Any, steps: int, thoughts: bool) -> None:
    """A few hundred SFT steps on the scripted episode, so the tiny model writes agent turns of realistic length
    (a short thought, then ``Action: <command>``, then the end of the turn) instead of running to the token cap."""
    import torch

    from agentrl.policies.prompts import initial_messages

    info = {"task": TASK, "admissible_actions": admissible("middle", [])}
    chat = initial_messages("alfworld", f"{ROOM}\n\nYour task is to: {TASK}", info, example=False, thoughts=thoughts)
    for (answer, _, _), command in zip(ANSWERS, EXPERT, strict=True):
        thought = f"Think: I should {command.split()[0]} next.\n" if thoughts else ""
        chat += [{"role": "assistant", "content": f"{thought}Action: {command}"}, {"role": "user", "content": answer}]
    ids = tokenizer.apply_chat_template(chat, tokenize=True)
    ids = torch.tensor([ids if isinstance(ids, list) else list(ids["input_ids"])])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build(args: argparse.Namespace) -> tuple[str, Any, Any]:
    """(model folder, tokenizer, critic ValueModel) on the chosen device."""
    import tempfile

    import torch

    from agentrl.critic import ValueModel
    from agentrl.models import build_tiny_model, load_causal_lm, load_tokenizer, resolve_model

    if args.model:
        folder = resolve_model(args.model)
        tokenizer = load_tokenizer(folder)
    else:  # fitted once per size and format, then reused (fitting takes minutes on a loaded 2-core machine)
        folder = str(Path(tempfile.gettempdir()) / f"bench-actions-tiny-{args.hidden}x{args.layers}-"
                     f"{args.train_steps}-{args.thoughts}")
        if not (Path(folder) / "config.json").is_file():
            torch.manual_seed(0)
            model, tokenizer = build_tiny_model(CORPUS, vocab_size=1024, hidden_size=args.hidden,
                                                num_layers=args.layers, num_heads=4)
            fit(model, tokenizer, args.train_steps, args.thoughts == "on")
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        tokenizer = load_tokenizer(folder)
    backbone = load_causal_lm(folder, dtype=getattr(torch, args.dtype), device=args.device)
    critic = ValueModel(backbone, backbone.config.hidden_size).to(device=args.device)
    torch.nn.init.normal_(critic.value_head.weight, std=0.02)
    return folder, tokenizer, critic.eval()


def trie_choose(backend: Any, requests: list[Any], sampling: Any) -> list[list[Any]]:
    """The alternative to the library's scoring: greedy decoding through a token trie of each request's choices.

    Per row, the tails (the choices' tokens after what they share with the prompt, plus end-of-turn) form a trie;
    each step feeds one token per row and keeps the best allowed next token. Returns the one decoded choice.
    """
    import torch

    from agentrl import kv_cache
    from agentrl.backends.base import Completion
    from agentrl.kv_cache import common_prefix

    prompts = [backend.encode(r.messages) for r in requests]
    heads, tails = [], []
    for request, prompt in zip(requests, prompts, strict=True):
        text = backend.render(request.messages)
        full = [backend.tokens(text + c) + [backend.end_id] for c in dict.fromkeys(request.choices)]
        shared = min(common_prefix(prompt, ids) for ids in full)
        heads.append(prompt[:shared])
        tails.append({tuple(ids[shared:]): c for ids, c in zip(full, dict.fromkeys(request.choices), strict=True)})
    pre = backend._prefill(requests, heads)
    logits, cache, mask, pos = pre.logits, pre.cache, pre.batch.mask, pre.batch.positions[:, -1]
    chosen: list[tuple[int, ...]] = [() for _ in requests]
    done = [False] * len(requests)
    while not all(done):
        picks = []
        for r, options in enumerate(tails):
            if done[r]:
                picks.append(backend.pad_id)
                continue
            allowed = sorted({t[len(chosen[r])] for t in options if t[: len(chosen[r])] == chosen[r]})
            best = allowed[int(torch.argmax(logits[r, allowed]))]
            chosen[r] += (best,)
            done[r] = chosen[r] in options
            picks.append(best)
        if all(done):
            break
        alive = torch.tensor([not d for d in done], dtype=torch.long)
        mask, pos = torch.cat([mask, alive[:, None].to(mask.device)], dim=1), pos + 1
        with torch.inference_mode():
            out, cache = kv_cache.forward(backend.model, cache, input_ids=torch.tensor(picks, device=mask.device)[:, None],
                                          attention_mask=mask, position_ids=pos[:, None])
        logits = out.logits[:, -1].float()
    return [[Completion(text=tails[r][chosen[r]], num_tokens=len(chosen[r]), logprob=0.0)] for r in range(len(requests))]


class TrieBackend:
    """A TransformersBackend whose constrained requests go through :func:`trie_choose` instead."""

    def __init__(self, backend: Any):
        self.backend = backend

    def generate(self, requests: list[Any], sampling: Any) -> list[list[Any]]:
        if requests and requests[0].choices is not None:
            return trie_choose(self.backend, requests, sampling)
        return self.backend.generate(requests, sampling)

    def release(self, key: str) -> None:
        self.backend.release(key)


def run_method(method: str, folder: str, tokenizer: Any, critic: Any, args: argparse.Namespace) -> tuple[float, float]:
    """Wall-clock and CPU seconds per step of one method (CPU time: this process's, robust to a shared machine)."""
    import torch

    from agentrl.backends.base import Sampling
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.policies.best_of_k import BestOfK, CriticScorer
    from agentrl.policies.react import ReActPolicy

    backend: Any = TransformersBackend.from_pretrained(folder, device=args.device, dtype=args.dtype)
    space = "free" if method == "free" else "admissible"
    if method == "trie":
        backend = TrieBackend(backend)
    sampling = Sampling(max_new_tokens=args.new_tokens, seed=0)
    policy: Any = ReActPolicy(backend, sampling, action_space=space, thoughts=args.thoughts == "on",
                              example=args.example)
    if method.startswith("best-of-"):
        policy = BestOfK(policy, CriticScorer(critic, tokenizer), k=int(method.split("-")[-1]))
    info = {"task": TASK, "admissible_actions": admissible("middle", [])}
    contexts = [policy.begin(i, f"{ROOM}\n\nYour task is to: {TASK}", info, "alfworld") for i in range(args.envs)]
    elapsed = cpu = 0.0
    for t in range(args.steps):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        decisions = policy.act(contexts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        answer, at, objects = ANSWERS[t % len(ANSWERS)]
        for ctx, decision in zip(contexts, decisions, strict=True):
            policy.observe(ctx, decision, answer, dict(info, admissible_actions=admissible(at, objects)))
    return elapsed / args.steps, cpu / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="policy model (folder or `default`; default: a tiny from-scratch Llama)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--hidden", type=int, default=128, help="tiny model hidden size")
    parser.add_argument("--layers", type=int, default=4, help="tiny model layers")
    parser.add_argument("--train-steps", type=int, default=300, help="tiny model: SFT steps on the scripted episode")
    parser.add_argument("--envs", type=int, default=4, help="parallel contexts")
    parser.add_argument("--steps", type=int, default=6, help="agent steps per episode")
    parser.add_argument("--new-tokens", type=int, default=40, help="token cap per generated turn")
    parser.add_argument("--thoughts", default="on", choices=("on", "off"))
    parser.add_argument("--example", action="store_true",
                        help="in-context example in the prompt (an untrained model such as SmolLM2 then writes the "
                        "Think/Action format; the tiny model is fitted without it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="free,admissible,trie,best-of-5")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()

    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder, tokenizer, critic = build(args)
    methods = args.methods.split(",")
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    run_method(methods[0], folder, tokenizer, critic, args)  # warm-up (allocations, kernels)
    for _ in range(args.repeats):
        for m in methods:
            seconds, cpu_seconds = run_method(m, folder, tokenizer, critic, args)
            times[m].append(seconds)
            cpu[m].append(cpu_seconds)
            print(f"  {m}: {seconds:.4f} s/step wall, {cpu_seconds:.4f} s/step CPU", file=sys.stderr, flush=True)
    base, base_cpu = statistics.median(times[methods[0]]), statistics.median(cpu[methods[0]])
    model = args.model or f"tiny hidden {args.hidden} x {args.layers} layers, {args.train_steps} SFT steps"
    print(f"device {args.device} {args.dtype} ({torch.get_num_threads()} threads), model {model}, thoughts "
          f"{args.thoughts}{', example' if args.example else ''}, {args.envs} envs x {args.steps} steps, {args.new_tokens} token cap, {args.repeats} repeats")
    print(f"| method | wall s/step (min / median) | x {methods[0]} (wall) | CPU s/step (median) | x {methods[0]} (CPU) "
          "| target |")
    print("|---|---|---|---|---|---|")
    targets = {"admissible": 1.3, "trie": 1.3, "best-of-5": 2.0}
    for m in methods:
        med, med_cpu = statistics.median(times[m]), statistics.median(cpu[m])
        target = f"<= {targets[m]}" if m in targets else ""
        print(f"| {m} | {min(times[m]):.3f} / {med:.3f} | {med / base:.2f} | {med_cpu:.3f} | {med_cpu / base_cpu:.2f} "
              f"| {target} |")


if __name__ == "__main__":
    main()
