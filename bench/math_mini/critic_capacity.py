"""Can this critic learn to rank the steps of one problem at all? A probe that trains only the critic.

    PYTHONPATH=. .venv/bin/python bench/math_mini/critic_capacity.py --rollouts R.jsonl --model SFT/policy \
        --demonstrations D.jsonl --label oracle --steps 1000 --out C/oracle
    agentrl critic-report --trajectories HELDOUT.jsonl --model SFT/policy --critic C/oracle ... --out C/oracle/report.json
    PYTHONPATH=. .venv/bin/python bench/math_mini/critic_capacity.py --demonstrations D.jsonl --summarize C/*/report.json

OREO's critic on chain sums ranks problems (pooled AUC 0.9) but not sibling steps (within-problem AUC ~0.5, even
in-sample). This separates three explanations by training the same critic (the SFT policy's backbone and a zero
value head, as ``agentrl learn`` builds it) by plain regression at the afterstates, with the policy frozen:

* ``--label outcome``: every afterstate of an episode regresses on its 0/1 outcome. This is OREO's value target
  with ``beta -> 0`` (the policy frozen: every log-ratio is 0), so it isolates the data and the optimiser from
  the joint loss.
* ``--label oracle``: afterstate ``k`` regresses on 1 if the first ``k`` steps are the reference's first ``k``
  (the episode is still on a solving path), else 0 -- process supervision, which the paper does not use. If the
  critic cannot learn this, the backbone lacks the capacity (or the features) to check a step; if it can and
  ``outcome`` cannot, the outcome signal or its amount is what is missing.

Writes a critic folder (``value_model.json`` with ``trained_at.afterstates``) that ``agentrl critic-report``,
best-of-N and beam search read like any other. A diagnostic of bench/math_mini/RESULTS.md, not a metric of agentrl.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoModel

from agentrl.critic import ValueModel
from agentrl.data import TokenizedEpisode, collate, tokenize_episode
from agentrl.models import load_tokenizer
from agentrl.trajectory import Episode, iter_episodes


def references(path: str) -> dict[str, tuple[str, ...]]:
    """task_id -> the expert's actions (the reference solution, one line per step)."""
    return {e.task_id: tuple(s.action.strip() for s in e.steps) for e in iter_episodes(path) if e.success}


def targets(episode: Episode, label: str, reference: tuple[str, ...] | None) -> list[float]:
    """One 0/1 target per step's afterstate (see the module docstring)."""
    if label == "outcome":
        return [float(bool(episode.success))] * len(episode.steps)
    if reference is None:
        raise SystemExit(f"{episode.task_id}: no reference solution in --demonstrations")
    out, on_path = [], True
    for k, step in enumerate(episode.steps):
        on_path = on_path and k < len(reference) and step.action.strip() == reference[k]
        out.append(float(on_path))
    out[-1] = float(bool(episode.success))  # the final answer line: right iff the episode solved the problem
    return out


def load(args: argparse.Namespace, tokenizer) -> list[tuple[TokenizedEpisode, list[float]]]:
    refs = references(args.demonstrations) if args.label == "oracle" else {}
    items = []
    for number, episode in enumerate(iter_episodes(args.rollouts), start=1):
        if episode.error:
            continue
        item = tokenize_episode(episode, tokenizer, where=f"{args.rollouts}: episode {number}")
        if len(item.after_positions) != len(episode.steps):
            raise SystemExit(f"{args.rollouts}: episode {number}: steps and assistant turns differ")
        items.append((item, targets(episode, args.label, refs.get(episode.task_id))))
    return items


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.model)
    items = load(args, tokenizer)
    positives = sum(t for _, ts in items for t in ts)
    print(f"{len(items)} episodes, {sum(len(ts) for _, ts in items)} afterstates, {positives:.0f} with target 1")
    backbone = AutoModel.from_pretrained(args.model, dtype=torch.float32)
    critic = ValueModel(backbone, backbone.config.hidden_size, base=args.model)
    if args.freeze:  # a linear probe: do the SFT policy's own features at the afterstate tell a right step?
        backbone.requires_grad_(False)
    optimizer = torch.optim.AdamW(critic.trainable_parameters(), lr=args.lr, weight_decay=0.0)
    order: list[int] = []
    rng = random.Random(args.seed)
    start, running = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        if len(order) < args.batch_size:
            order += rng.sample(range(len(items)), len(items))
        picked, order = order[: args.batch_size], order[args.batch_size :]
        batch = collate([items[i][0] for i in picked], tokenizer.pad_token_id or 0)
        goal = torch.zeros(batch["after_mask"].shape)
        for row, i in enumerate(picked):
            goal[row, : len(items[i][1])] = torch.tensor(items[i][1])
        values = critic.values(batch["input_ids"], batch["attention_mask"]).gather(1, batch["after_positions"])
        mask = batch["after_mask"].float()
        loss = (((values - goal) ** 2) * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(critic.trainable_parameters(), 1.0)
        optimizer.step()
        running.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {sum(running) / len(running):.4f}  {time.perf_counter() - start:.0f} s",
                  flush=True)
            running = []
    critic.trained_at = {"algo": f"critic_capacity:{args.label}", "level": "step", "afterstates": True,
                         "steps": args.steps, "lr": args.lr, "frozen": args.freeze, "episodes": len(items)}  # fmt: skip
    critic.save_pretrained(args.out)
    Path(args.out, "probe.json").write_text(json.dumps(vars(args), indent=1) + "\n")
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")


def summarize(paths: list[str], demonstrations: str, plot: str | None = None) -> None:
    """One row per ``agentrl critic-report`` JSON: its AUCs and ECE, and the reference-step AUC (at sibling sets
    that hold the reference's step, that step against the other siblings: does V check the arithmetic?)."""
    from agentrl.critic_report import grouped_auc

    refs = references(demonstrations)
    rows: list[tuple[str, float, float, float]] = []
    print("| critic | sibling AUC (pairs) | pooled AUC | ECE | reference step vs other siblings: AUC (pairs) |")
    print("|---|---|---|---|---|")
    for path in paths:
        report = json.loads(Path(path).read_text())
        groups = []
        for s in report["sibling_sets"]:
            ref = refs.get(s["task_id"], ())
            step = ref[s["depth"] - 1] if s["depth"] <= len(ref) else None
            right = [x["value"] for x in s["siblings"] if x["action"].strip() == step]
            groups.append((right, [x["value"] for x in s["siblings"] if x["action"].strip() != step]))
        ref_auc, ref_pairs = grouped_auc(groups)
        sib = report["sibling_auc"]
        print(f"| {Path(path).parent.name} | {sib['auc']:.3f} ({sib['pairs']}) | {report['pooled_auc']['overall']:.3f} | "
              f"{report['calibration']['ece']:.3f} | {ref_auc:.3f} ({ref_pairs}) |")
        rows.append((Path(path).parent.name, sib["auc"], ref_auc, report["pooled_auc"]["overall"]))
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 3.6))
        x = range(len(rows))
        for offset, (k, label) in enumerate([(1, "sibling AUC (MC labels)"), (2, "reference step vs siblings"),
                                             (3, "pooled AUC (across problems)")]):
            ax.bar([i + (offset - 1) * 0.27 for i in x], [r[k] for r in rows], width=0.27, label=label)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.axhline(0.75, color="black", lw=0.8, ls=":")
        ax.set_xticks(list(x), [r[0] for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0.3, 1.0)
        ax.set_ylabel("AUC, held-out train problems")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"wrote {plot}")


def logprob_report(args: argparse.Namespace) -> None:
    """The same report with ``log pi(step | prefix)`` of ``--model`` in place of V: does the *policy* know the
    right step? (Written like a critic report, so ``--summarize`` reads it; its calibration is meaningless.)"""
    from transformers import AutoModelForCausalLM

    from agentrl.critic_report import ScoredEpisode, build_report, prefix_siblings

    tokenizer = load_tokenizer(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    episodes = []
    with torch.no_grad():
        for number, episode in enumerate(iter_episodes(args.rollouts), start=1):
            if episode.error:
                continue
            item = tokenize_episode(episode, tokenizer, where=f"{args.rollouts}: episode {number}")
            ids = torch.tensor([item.input_ids])
            logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            token = logps.gather(1, ids[0, 1:, None])[:, 0]  # token[p - 1] = log pi(ids[p] | ids[:p])
            ends = item.after_positions
            steps = [sum(token[p - 1].item() for p in range(1 if j == 0 else ends[j - 1] + 1, end + 1)
                         if item.action_mask[p]) for j, end in enumerate(ends)]  # fmt: skip
            episodes.append(ScoredEpisode(episode.task_id, [s.action for s in episode.steps], steps,
                                          bool(episode.success)))
    sets, prefixes = prefix_siblings(episodes)
    report = build_report(sets, episodes, prefixes, mode="policy log-prob", config=vars(args))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}/report.json: sibling AUC {report['sibling_auc']['auc']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--summarize", nargs="*", metavar="REPORT.json", help="tabulate critic reports and stop")
    parser.add_argument("--plot", help="with --summarize: a bar chart of the AUCs (PNG)")
    parser.add_argument("--rollouts", help="the SFT policy's sampled episodes (JSONL)")
    parser.add_argument("--model", help="the SFT policy folder: backbone and tokenizer")
    parser.add_argument("--demonstrations", help="expert solutions (JSONL), for --label oracle")
    parser.add_argument("--label", choices=["outcome", "oracle"], default="outcome")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--logprob", action="store_true",
                        help="no training: score --rollouts' steps by log pi(step | prefix) of --model instead")
    parser.add_argument("--freeze", action="store_true", help="train the value head only (a linear probe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.summarize:
        if not args.demonstrations:
            parser.error("--summarize needs --demonstrations (the reference steps)")
        return summarize(args.summarize, args.demonstrations, args.plot)
    if args.logprob and args.rollouts and args.model and args.out:
        return logprob_report(args)
    if not (args.rollouts and args.model and args.out):
        parser.error("--rollouts, --model and --out are needed to train a probe (or to score with --logprob)")
    if args.label == "oracle" and not args.demonstrations:
        parser.error("--label oracle needs --demonstrations")
    train(args)


if __name__ == "__main__":
    main()
