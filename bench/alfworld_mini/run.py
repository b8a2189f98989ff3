"""ALFWorld mini-benchmark: the OREO paper's Table 2 / Figure 4 protocol, sized for a 2-core CPU.

Protocol (every size is in ``bench/alfworld_mini/config.yaml``; flags override it):

1. generate ``train`` tasks, ``valid_seen`` tasks (train rooms) and ``valid_unseen`` tasks (unseen rooms),
   every one verified by alfworld's hand-coded expert; collect one expert demonstration per train task;
2. per seed: a from-scratch model whose tokenizer is fitted to the demonstrations, SFT on them;
3. per seed: ``rollouts_per_task`` sampled rollouts of the SFT policy on every train task (the paper: 5);
4. per seed, each starting from the SFT policy: rejection sampling (SFT on the successful episodes of
   demonstrations + rollouts), DPO (success vs failure pairs of the same task, from demonstrations + rollouts:
   a task no rollout solved still pairs its demonstration with a failed rollout), OREO (token level, policy +
   critic, on demonstrations + rollouts); with ``learners``, also DQO and/or OREAL on the rollouts (the SFT
   policy's own samples, grouped by task for OREAL);
5. per seed: evaluate SFT, RS, DPO and OREO greedily, and OREO + best-of-K (K > 1) with the OREO critic, on
   both evaluation splits; best-of-1 is OREO greedy (one candidate, nothing to choose);
6. aggregate: success mean +- std over seeds per split and method, and per task type; a markdown table
   (``summary.md``), ``summary.json`` and a plot (``summary.png``).

Every stage writes its output before the next starts and is skipped when rerun, so an interrupted run picks up
where it stopped: ``python bench/alfworld_mini/run.py --config bench/alfworld_mini/config.yaml``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentrl import pipeline
from agentrl.config import ConfigError, option, parse_config, require
from agentrl.pipeline import Stages, console

SPLITS = ("valid_unseen", "valid_seen")


@dataclass
class Config:
    """Sizes of the ALFWorld mini-benchmark (see the module docstring for the protocol)."""

    out: str = option("runs/alfworld_mini", help="folder for tasks, models, trajectories and results")
    seeds: list[int] = option([0, 1, 2], help="training seeds (init, data order, sampling)")
    task_seed: int = option(0, help="seed of task generation (the same tasks for every training seed)")
    train_tasks: int = option(96, help="generated train tasks")
    eval_tasks: int = option(100, help="generated tasks of each evaluation split (valid_seen, valid_unseen)")
    splits: list[str] = option(list(SPLITS), help="evaluation splits")
    room_size: str = option("any", help="room size of generated tasks: any, small, medium or large")
    task_types: list[str] = option([], help="task types to generate (empty: all six; small rooms host only "
                                   "pick_and_place_simple, look_at_obj_in_light and pick_two_obj_and_place)")
    workers: int = option(2, help="processes generating tasks")
    model: str = option("tiny", help="`tiny` (from scratch, tokenizer fitted to the demonstrations) or a model "
                        "folder / `default` (SmolLM2-135M-Instruct; a GPU machine is advised)")
    hidden_size: int = option(128, help="tiny model: hidden size")
    num_layers: int = option(4, help="tiny model: layers")
    num_heads: int = option(4, help="tiny model: attention heads")
    vocab_size: int = option(1024, help="tiny model: BPE vocabulary fitted to the demonstrations")
    max_steps: int = option(25, help="step cap per episode (the paper: 40)")
    max_new_tokens: int = option(40, help="token cap per generated turn")
    num_envs: int = option(16, help="parallel environments in rollouts and evaluations")
    batch_size: int = option(8, help="episodes per optimizer step")
    max_length: int = option(4096, help="longest episode the learner keeps, in tokens (the tiny model has 4,096 "
                             "positions; seeds 0-1 of bench/RESULTS.md ran with 2,048, which skips 9 of 96 demos)")
    sft_epochs: float = option(12.0, help="SFT passes over the demonstrations")
    sft_lr: float = option(2e-3, help="SFT learning rate (from scratch)")
    rollouts_per_task: int = option(5, help="SFT-policy rollouts per train task (the paper: 5)")
    rollout_temperature: float = option(1.0, help="sampling temperature of the SFT-policy rollouts")
    epochs: float = option(1.0, help="passes over their data of RS, DPO and OREO")
    lr: float = option(2e-4, help="policy learning rate of RS, DPO and OREO")
    critic_lr: float = option(1e-3, help="OREO critic learning rate")
    beta: float = option(0.03, help="OREO KL coefficient beta")
    dpo_beta: float = option(0.1, help="DPO beta")
    dpo_lr: float | None = option(None, help="DPO policy learning rate (default: lr); small.yaml's SFT policy "
                                  "collapses under DPO at 2e-4")
    best_of: list[int] = option([1, 3, 5], help="K of the OREO + best-of-K evaluations (1: OREO greedy)")
    learners: list[str] = option([], help="also these learners, each from the SFT policy on its rollouts (the "
                                 "samples of pi_ref, rollouts_per_task per task), one pass: dqo, oreal")
    learners_with_demos: bool = option(False, help="dqo/oreal also train on the demonstrations (off-policy: the "
                                       "learner warns; OREAL then finds successes in tasks no rollout solved)")
    oreal_rm_warmup: int = option(10, help="OREAL: steps in which only the token reward model trains (the paper: "
                                  "10), before its one policy pass")
    only: list[str] = option([], help="run only the stages whose name matches one of these shell patterns, "
                             "comma-separated, e.g. '*: RS,*: evaluate SFT *': a seed's independent stages can "
                             "then run in two processes (no summary then)")

    def __post_init__(self) -> None:
        require(bool(self.seeds), "seeds: give at least one seed")
        require(self.train_tasks >= 6 and self.eval_tasks >= 1, "need train_tasks >= 6 and eval_tasks >= 1")
        for split in self.splits:
            require(split in SPLITS, f"splits: valid_seen or valid_unseen, got {split!r}")
        require(all(k >= 1 for k in self.best_of), f"best_of: every K must be >= 1, got {self.best_of}")
        require(self.rollouts_per_task >= 1, f"rollouts_per_task must be >= 1, got {self.rollouts_per_task}")
        for algo in self.learners:
            require(algo in ("dqo", "oreal"), f"learners: dqo or oreal, got {algo!r}")


def methods(cfg: Config) -> list[str]:
    """Evaluated methods in table order."""
    critics = ["OREO"] + (["DQO"] if "dqo" in cfg.learners else [])  # critics trained where search reads them
    return (["SFT", "RS", "DPO", "OREO"] + [algo.upper() for algo in cfg.learners]
            + [f"{c}+best-of-{k}" for c in critics for k in cfg.best_of if k > 1])  # fmt: skip


def run_seed(cfg: Config, seed: int, data: Path, expert: Path) -> None:
    """Steps 2-5 of the protocol for one training seed."""
    out = Path(cfg.out) / f"seed{seed}"
    stages = Stages(out, only=cfg.only)
    common = {"env": "alfworld", "data": str(data), "num_envs": cfg.num_envs, "max_steps": cfg.max_steps,
              "example": False, "seed": seed, "max_new_tokens": cfg.max_new_tokens}  # fmt: skip
    # A checkpoint every 100 steps: a stage killed part-way (SFT runs ~20 min) resumes from it, bit-exact.
    train = {"batch_size": cfg.batch_size, "max_length": cfg.max_length, "seed": seed, "log_every": 25,
             "save_every": 100}  # fmt: skip

    base = pipeline.base_model(stages, f"seed {seed}: model", cfg.model, expert, out / "base-model", seed,
                               vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                               num_heads=cfg.num_heads)  # fmt: skip
    sft = out / "sft" / "policy"
    stages.run(f"seed {seed}: SFT", sft / "config.json", pipeline.learn, algo="sft", data=[str(expert)],
               model=base, out=str(sft.parent), lr=cfg.sft_lr, epochs=cfg.sft_epochs, lr_schedule="cosine",
               **train)
    rollouts = out / "sft-rollouts.jsonl"
    stages.run(f"seed {seed}: SFT-policy rollouts", pipeline.finished(rollouts), pipeline.rollout, **common,
               split="train", policy="react", model=str(sft), temperature=cfg.rollout_temperature,
               samples_per_task=cfg.rollouts_per_task, out=str(rollouts))
    both = [str(expert), str(rollouts)]
    stages.run(f"seed {seed}: OREO", out / "oreo" / "critic", pipeline.learn, algo="oreo", data=both,
               model=str(sft), out=str(out / "oreo"), lr=cfg.lr, critic_lr=cfg.critic_lr, beta=cfg.beta,
               epochs=cfg.epochs, **train)
    stages.run(f"seed {seed}: RS", out / "rs" / "policy" / "config.json", pipeline.learn, algo="rs", data=both,
               model=str(sft), out=str(out / "rs"), lr=cfg.lr, epochs=cfg.epochs, **train)
    stages.run(f"seed {seed}: DPO", out / "dpo" / "policy" / "config.json", pipeline.learn, algo="dpo",
               data=both, model=str(sft), out=str(out / "dpo"), lr=cfg.dpo_lr or cfg.lr, beta=cfg.dpo_beta,
               epochs=cfg.epochs, **train)
    own = [str(expert), str(rollouts)] if cfg.learners_with_demos else [str(rollouts)]
    for algo in cfg.learners:  # DQO's weight pi/pi_ref and OREAL's update assume pi_ref's (the SFT policy's) samples
        stages.run(f"seed {seed}: {algo.upper()}", out / algo / "critic", pipeline.learn, algo=algo, data=own,
                   model=str(sft), out=str(out / algo), lr=cfg.lr, critic_lr=cfg.critic_lr, beta=cfg.beta,
                   epochs=cfg.epochs, **({"oreal_rm_warmup": cfg.oreal_rm_warmup} if algo == "oreal" else {}),
                   **train)  # fmt: skip

    oreo = {"model": str(out / "oreo" / "policy")}
    # Run order puts the paper's comparison first (SFT, OREO, best-of-K); tables use ``methods()`` order.
    evals: dict[str, dict[str, Any]] = {"SFT": {"model": str(sft)}, "OREO": oreo}
    for k in cfg.best_of:
        if k > 1:
            evals[f"OREO+best-of-{k}"] = {**oreo, "critic": str(out / "oreo" / "critic"), "best_of": k}
    evals.update({"RS": {"model": str(out / "rs" / "policy")}, "DPO": {"model": str(out / "dpo" / "policy")}})
    evals.update({algo.upper(): {"model": str(out / algo / "policy")} for algo in cfg.learners})
    if "dqo" in cfg.learners:  # DQO's critic is trained at afterstates too: best-of-K with it, as with OREO's
        dqo = {"model": str(out / "dqo" / "policy"), "critic": str(out / "dqo" / "critic")}
        evals.update({f"DQO+best-of-{k}": {**dqo, "best_of": k} for k in cfg.best_of if k > 1})
    for split in cfg.splits:
        for method, extra in evals.items():
            path = out / "results" / split / f"{method}.json"
            stages.run(f"seed {seed}: evaluate {method} on {split}", path, pipeline.evaluate, **common, **extra,
                       split=split, policy="react", method=method, out=str(path),
                       trajectories=str(path.with_suffix(".jsonl")))
    timings = out / "times.json"
    old = json.loads(timings.read_text()) if timings.exists() else {}
    timings.write_text(json.dumps({**old, **{k: v for k, v in stages.times.items() if v}}, indent=1))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def nothing_happens(trajectories: Path) -> float | None:
    """Share of the agent's commands the engine answered "Nothing happens." (None: no file or no commands)."""
    from agentrl.trajectory import iter_episodes

    if not trajectories.exists():
        return None
    answers = [m["content"] for ep in iter_episodes(trajectories) for m in ep.messages[2:] if m["role"] == "user"]
    return sum(a.startswith("Nothing happens") for a in answers) / len(answers) if answers else None


def summarize(cfg: Config) -> dict[str, Any]:
    """Success mean +- std over the seeds that finished, per split x method and per task type, and how many of
    the commands did nothing (mean over seeds): a policy's progress shows there before it shows in success."""
    from agentrl.evaluation import load_results

    out = Path(cfg.out)
    summary: dict[str, Any] = {"config": asdict(cfg), "splits": {}}
    for split in cfg.splits:
        rows = {}
        for method in methods(cfg):
            paths = [out / f"seed{s}" / "results" / split / f"{method}.json" for s in cfg.seeds]
            paths = [p for p in paths if p.exists()]  # finished evaluations only
            if not paths:
                continue
            results = [load_results(p) for p in paths]
            mean, std = _mean_std([r["success_rate"] for r in results])
            types = sorted({t for r in results for t in r["by_task_type"]})
            by_type = {t: _mean_std([r["by_task_type"].get(t, {}).get("success_rate", 0.0) for r in results])
                       for t in types}  # fmt: skip
            idle = [x for p in paths if (x := nothing_happens(p.with_suffix(".jsonl"))) is not None]
            rows[method] = {"mean": mean, "std": std, "seeds": len(results), "episodes": results[0]["episodes"],
                            "by_task_type": {t: {"mean": m, "std": s} for t, (m, s) in by_type.items()},
                            "nothing_happens": statistics.fmean(idle) if idle else None}
        summary["splits"][split] = rows
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """The results table (success % mean +- std over seeds, and the share of commands that did nothing) and a
    per-task-type table per split."""
    lines = []
    splits = summary["splits"]
    names = list(dict.fromkeys(m for rows in splits.values() for m in rows))
    idle_heads = [f"nothing happens, {split}" for split in splits]
    lines.append("| method | " + " | ".join([*splits, *idle_heads]) + " |")
    lines.append("|---|" + "---|" * 2 * len(splits))
    for m in names:
        cells, idle = [], []
        for rows in splits.values():
            r = rows.get(m)
            cells.append(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} ({r['seeds']} seeds)" if r else "-")
            idle.append(f"{100 * r['nothing_happens']:.0f}%" if r and r.get("nothing_happens") is not None else "-")
        lines.append(f"| {m} | " + " | ".join(cells + idle) + " |")
    for split, rows in splits.items():
        types = sorted({t for r in rows.values() for t in r["by_task_type"]})
        if not types:
            continue
        lines.append("")
        lines.append(f"{split}, success % by task type (mean over seeds):")
        lines.append("")
        lines.append("| method | " + " | ".join(t.replace("_", " ") for t in types) + " |")
        lines.append("|---|" + "---|" * len(types))
        for m, r in rows.items():
            cells = [f"{100 * r['by_task_type'][t]['mean']:.0f}" if t in r["by_task_type"] else "-" for t in types]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], out: Path) -> Path:
    """Grouped bars: success (mean +- std over seeds) by method, one group per split."""
    from agentrl.plots import plot_grouped_bars

    groups = {split: {m: (100 * r["mean"], 100 * r["std"]) for m, r in rows.items()}
              for split, rows in summary["splits"].items()}  # fmt: skip
    return plot_grouped_bars(groups, out, ylabel="success % (mean ± std over seeds)",
                             title="ALFWorld mini-benchmark")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(Config, list(sys.argv[1:] if argv is None else argv), prog="bench/alfworld_mini/run.py",
                           description=__doc__)  # fmt: skip
    except ConfigError as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    start = time.perf_counter()
    out = Path(cfg.out)
    data = out / "data"
    stages = Stages(out, only=cfg.only)
    stages.run("generate train tasks", data / "json_2.1.1" / "train", pipeline.gen_tasks, root=data, split="train",
               n=cfg.train_tasks, seed=cfg.task_seed, room_size=cfg.room_size, workers=cfg.workers,
               task_types=cfg.task_types)
    for split in cfg.splits:  # valid_seen's tasks come from task_seed + 1, valid_unseen's from task_seed + 2
        stages.run(f"generate {split} tasks", data / "json_2.1.1" / split, pipeline.gen_tasks, root=data,
                   split=split, n=cfg.eval_tasks, seed=cfg.task_seed + 1 + ("valid_seen", "valid_unseen").index(split),
                   room_size=cfg.room_size, workers=cfg.workers, task_types=cfg.task_types)
    expert = out / "expert.jsonl"
    stages.run("expert demonstrations", pipeline.finished(expert), pipeline.rollout, env="alfworld", data=str(data),
               split="train", policy="expert", num_envs=cfg.num_envs, max_steps=max(cfg.max_steps, 50),
               example=False, seed=cfg.task_seed, out=str(expert))
    for seed in cfg.seeds:
        run_seed(cfg, seed, data, expert)
    if cfg.only:
        console.print(f"ran the stages matching {cfg.only} in {time.perf_counter() - start:.0f} s; "
                      "rerun without --only for the summary")
        return 0

    summary = summarize(cfg)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(markdown(summary))
    png = plot(summary, out / "summary.png")
    console.print(markdown(summary))
    console.print(f"alfworld_mini finished in {time.perf_counter() - start:.0f} s; table {out / 'summary.md'}, plot {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
