"""bench/math_mini: the OREO math protocol on a CPU-sized model, scripted and resumable.

GSM-Symbolic (or chain-sum) train problems -> expert (reference-solution) rollouts -> tiny from-scratch model
fitted on that text -> SFT -> sampled SFT-policy rollouts (successes and failures) -> step-level OREO (policy +
critic) -> evaluation on the dataset's test split and the 100 real GSM8K test problems: SFT greedy, OREO greedy
and OREO + critic-guided step beam search with B = 1, 3, 5; with ``learners``, DQO and/or OREAL (token level,
on the SFT policy's rollouts) evaluated greedily too.

    .venv/bin/python bench/math_mini/run.py                      # bench/math_mini/config.yaml
    .venv/bin/python bench/math_mini/run.py --config my.yaml --out runs/math_mini/other --beams 1,3
    .venv/bin/python bench/math_mini/run.py --config bench/math_mini/chain_sum.yaml   # running sums, 3-4 terms

Every stage is one `agentrl` command called through its ``Config`` (``agentrl.pipeline``, as `agentrl demo`
does). A stage is skipped once its marker exists (rollouts and evaluations resume their JSONL files
episode by episode, learning resumes from its last checkpoint), so rerunning after an interruption loses
nothing. Outputs under ``out``: ``results/<dataset>/<method>.json`` (+ ``.jsonl`` episodes), ``results.md``
(the method x dataset table with Wilson 95% CIs), ``summary.json`` (rates, CIs, stage wall times),
``plots/*.png`` (written by `agentrl plot`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrl import pipeline
from agentrl.config import option, parse_config, require, to_dict
from agentrl.pipeline import Stages, console

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")
EXPERT_MAX_STEPS = 20  # reference solutions are replayed whole (GSM-Symbolic's longest has 15 steps)
DATASETS = ("gsm-symbolic", "chain-sum")  # generator datasets with train/test splits and reference steps
DATASET_NAMES = {
    "gsm-symbolic": "GSM-Symbolic test",
    "chain-sum": "chain-sum test",
    "gsm8k-test-100": "GSM8K test (100)",
}


@dataclass
class Config:
    """Options of bench/math_mini/run.py (every size lives here; config.yaml is the shipped choice)."""

    out: str = option(
        "runs/math_mini/main",
        help="folder for data, models, trajectories and results (reruns skip done stages)",
    )
    seed: int = option(
        0, help="seed of the train/test problems' generator seeds, initialisation and sampling"
    )
    dataset: str = option(
        "gsm-symbolic", help="train/test problems: gsm-symbolic or chain-sum (running sums, see envs/math)"
    )
    train_problems: int = option(1000, help="train problems with expert (reference) solutions")
    rollout_problems: int = option(300, help="train problems the SFT policy is sampled on (the first ones)")
    samples_per_task: int = option(2, help="sampled SFT-policy rollouts per problem (the paper: several)")
    test_problems: int = option(100, help="test problems of `dataset` evaluated (0: skip)")
    gsm8k_problems: int = option(100, help="GSM8K test problems evaluated (<= 100; 0: skip)")
    model: str = option("tiny", help="`tiny` (from scratch on the expert text) or a model folder")
    hidden_size: int = option(128, help="tiny model: hidden size")
    num_layers: int = option(4, help="tiny model: layers")
    num_heads: int = option(4, help="tiny model: attention heads")
    vocab_size: int = option(1024, help="tiny model: BPE vocabulary")
    split_digits: bool = option(
        True, help="tiny model: one token per digit (numbers never merge into BPE pieces)"
    )
    example: bool = option(
        False, help="in-context example in the prompt (the tiny model learns the format by SFT)"
    )
    max_steps: int = option(10, help="step cap per episode and per beam search (the paper: 20)")
    max_new_tokens: int = option(96, help="token cap per reasoning step (one line)")
    num_envs: int = option(4, help="parallel environments of rollouts and greedy evaluations")
    sft_epochs: float = option(6.0, help="SFT passes over the expert solutions")
    sft_lr: float = option(2e-3, help="SFT learning rate (from-scratch models want a large one)")
    batch_size: int = option(16, help="episodes per optimizer step")
    rollout_temperature: float = option(1.0, help="sampling temperature of the SFT-policy rollouts")
    oreo_expert: bool = option(
        True, help="OREO trains on the expert solutions too (false: on the SFT policy's own rollouts only)"
    )
    oreo_epochs: float = option(1.0, help="OREO passes over its data (expert solutions and/or rollouts)")
    oreo_lr: float = option(2e-5, help="OREO policy learning rate")
    critic_lr: float = option(1e-3, help="OREO critic learning rate")
    beta: float = option(0.03, help="OREO KL coefficient beta")
    alpha: float | None = option(
        None, help="OREO KL regulariser weight (default: the learner's, 0.1 at step level)"
    )
    level: str = option("step", help="OREO level: step (the paper's choice for math), token or response")
    step_split: str = option(
        "line", help="OREO step split: line (one step per line, the paper's GSM8K) or turn"
    )
    beams: list[int] = option([1, 3, 5], help="beam widths B of the critic-guided step beam search")
    learners: list[str] = option(
        [],
        help="also these learners (token level, from the SFT policy, one pass), evaluated greedily: dqo, oreal",
    )
    learners_expert: bool = option(
        False,
        help="dqo/oreal also train on the expert solutions (off-policy for both: the learner warns); default: "
        "on the SFT policy's own rollouts, samples_per_task per problem (OREAL's groups)",
    )
    oreal_rm_warmup: int = option(10, help="OREAL: steps in which only the token reward model trains")
    beam_temperature: float = option(1.0, help="sampling temperature of the beam search's candidates")

    def __post_init__(self) -> None:
        require(self.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        require(self.train_problems >= 1, f"train_problems must be >= 1, got {self.train_problems}")
        require(
            1 <= self.rollout_problems <= self.train_problems, "rollout_problems must be 1..train_problems"
        )
        require(
            self.samples_per_task >= 1 and self.num_envs >= 1, "samples_per_task and num_envs must be >= 1"
        )
        require(self.test_problems >= 0, f"test_problems must be >= 0, got {self.test_problems}")
        require(0 <= self.gsm8k_problems <= 100, f"gsm8k_problems must be 0..100, got {self.gsm8k_problems}")
        require(
            self.test_problems + self.gsm8k_problems > 0,
            "nothing to evaluate: test_problems = gsm8k_problems = 0",
        )
        require(all(b >= 1 for b in self.beams), f"beams must be >= 1, got {self.beams}")
        require(
            self.level in ("step", "token", "response"), f"level: step|token|response, got {self.level!r}"
        )
        for algo in self.learners:
            require(algo in ("dqo", "oreal"), f"learners: dqo or oreal, got {algo!r}")


def _plot(**kwargs: Any) -> int:
    from agentrl.cli import plot

    return plot.run(plot.Config(**kwargs))


def oreo_data(cfg: Config, out: Path) -> list[str]:
    """OREO's trajectory files: the SFT policy's rollouts, after the expert solutions unless ``oreo_expert`` is off."""
    rollouts = str(out / "sft-rollouts.jsonl")
    return [str(out / "expert.jsonl"), rollouts] if cfg.oreo_expert else [rollouts]


def learner_stages(cfg: Config, stages: Stages, out: Path) -> None:
    """DQO / OREAL from the SFT policy at the token level (DQO's MDP; OREAL weighs tokens), one pass each, on the
    SFT policy's rollouts: the samples of pi_ref that DQO's importance weight and OREAL's update assume."""
    rollouts = str(out / "sft-rollouts.jsonl")
    data = [str(out / "expert.jsonl"), rollouts] if cfg.learners_expert else [rollouts]
    for algo in cfg.learners:
        extra = {"oreal_rm_warmup": cfg.oreal_rm_warmup} if algo == "oreal" else {}
        stages.run(f"{algo.upper()} token-level", out / algo / "critic", pipeline.learn, algo=algo, data=data,
                   model=str(out / "sft" / "policy"), out=str(out / algo), lr=cfg.oreo_lr, critic_lr=cfg.critic_lr,
                   beta=cfg.beta, epochs=cfg.oreo_epochs, batch_size=cfg.batch_size, seed=cfg.seed, log_every=25,
                   save_every=100, **extra)  # fmt: skip


def eval_plan(cfg: Config, out: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(dataset, method, extra eval options) for every evaluation, in run order."""
    sft, oreo = out / "sft" / "policy", out / "oreo"
    methods: list[tuple[str, dict[str, Any]]] = [
        ("SFT greedy", {"model": str(sft)}),
        ("OREO greedy", {"model": str(oreo / "policy")}),
    ]
    for b in cfg.beams:
        methods.append(
            (
                f"OREO beam B={b}",
                {
                    "model": str(oreo / "policy"),
                    "critic": str(oreo / "critic"),
                    "beam": b,
                    "temperature": cfg.beam_temperature,
                },
            )
        )
    methods += [(f"{algo.upper()} greedy", {"model": str(out / algo / "policy")}) for algo in cfg.learners]
    plan = []
    for dataset, n in ((cfg.dataset, cfg.test_problems), ("gsm8k-test-100", cfg.gsm8k_problems)):
        if n:
            plan += [(dataset, method, {**extra, "episodes": n}) for method, extra in methods]
    return plan


def result_path(out: Path, dataset: str, method: str) -> Path:
    return out / "results" / dataset / (method.replace(" ", "_").replace("=", "") + ".json")


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """Method x dataset table: successes/episodes, rate and Wilson 95% CI."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["dataset"], r["method"]): r for r in rows}
    lines = [
        "| method | " + " | ".join(DATASET_NAMES.get(d, d) for d in datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    for m in methods:
        cells = []
        for d in datasets:
            r = cell.get((d, m))
            cells.append(
                "-"
                if r is None
                else f"{r['successes']}/{r['episodes']} = {100 * r['success_rate']:.1f}% "
                f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_protocol(cfg: Config) -> dict[str, Any]:
    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    stages = Stages(out)
    problems = max(cfg.train_problems, cfg.test_problems)  # the generator makes this many per split
    common = {"env": "math", "dataset": cfg.dataset, "problems": problems, "seed": cfg.seed,
              "max_steps": cfg.max_steps, "max_new_tokens": cfg.max_new_tokens, "example": cfg.example,
              "progress": False}  # fmt: skip

    expert = out / "expert.jsonl"
    stages.run(
        f"expert solutions ({cfg.dataset} train)",
        pipeline.finished(expert),
        pipeline.rollout,
        **{**common, "max_steps": EXPERT_MAX_STEPS},
        split="train",
        policy="expert",
        episodes=cfg.train_problems,
        out=str(expert),
    )

    base = pipeline.base_model(
        stages,
        "tiny model",
        cfg.model,
        expert,
        out / "base-model",
        cfg.seed,
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        split_digits=cfg.split_digits,
    )

    sft = out / "sft"
    stages.run(
        "SFT on expert solutions",
        sft / "policy" / "config.json",
        pipeline.learn,
        algo="sft",
        data=[str(expert)],
        model=base,
        out=str(sft),
        lr=cfg.sft_lr,
        epochs=cfg.sft_epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        lr_schedule="cosine",
        log_every=50,
        save_every=100,  # a stage killed part-way resumes from its last checkpoint
    )

    rollouts = out / "sft-rollouts.jsonl"  # oreo_data() names the same files
    stages.run(
        "SFT-policy rollouts (sampled)",
        pipeline.finished(rollouts),
        pipeline.rollout,
        **common,
        split="train",
        policy="react",
        model=str(sft / "policy"),
        temperature=cfg.rollout_temperature,
        num_envs=cfg.num_envs,
        samples_per_task=cfg.samples_per_task,
        episodes=cfg.rollout_problems * cfg.samples_per_task,
        out=str(rollouts),
    )

    oreo = out / "oreo"
    alpha = {} if cfg.alpha is None else {"alpha": cfg.alpha}
    stages.run(
        f"OREO {cfg.level}-level (policy + critic)",
        oreo / "critic",
        pipeline.learn,
        algo="oreo",
        data=oreo_data(cfg, out),
        model=str(sft / "policy"),
        out=str(oreo),
        level=cfg.level,
        step_split=cfg.step_split,
        lr=cfg.oreo_lr,
        critic_lr=cfg.critic_lr,
        beta=cfg.beta,
        **alpha,
        epochs=cfg.oreo_epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        log_every=25,
        save_every=100,
    )

    learner_stages(cfg, stages, out)
    rows, by_dataset = [], {}
    for dataset, method, extra in eval_plan(cfg, out):
        path = result_path(out, dataset, method)
        path.parent.mkdir(parents=True, exist_ok=True)
        num_envs = 1 if "beam" in extra else cfg.num_envs
        stages.run(
            f"evaluate {method} on {dataset}",
            path,
            pipeline.evaluate,
            **{**common, "dataset": dataset},
            **extra,
            split="test",
            policy="react",
            method=method,
            num_envs=num_envs,
            out=str(path),
            trajectories=str(path.with_suffix(".jsonl")),
        )
        result = json.loads(path.read_text())
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "successes": result["successes"],
                "episodes": result["episodes"],
                "success_rate": result["success_rate"],
                "ci95": result["ci95"],
                "mean_steps": result["mean_steps"],
            }
        )
        by_dataset.setdefault(dataset, []).append(path)

    for dataset, paths in by_dataset.items():
        console.print(f"[bold]{DATASET_NAMES.get(dataset, dataset)}[/]")
        pipeline.compare(paths)
        png = out / "plots" / f"{dataset}.png"
        stages.run(f"plot {dataset}", png, _plot, results=[str(p) for p in paths], out=str(png))
    metrics_png = out / "plots" / "oreo-metrics.png"
    stages.run(
        "plot OREO training curves",
        metrics_png,
        _plot,
        metrics=str(oreo / "metrics.jsonl"),
        out=str(metrics_png),
    )

    table = results_markdown(rows)
    (out / "results.md").write_text(table)
    # stage wall times accumulate over reruns: a stage skipped now keeps the time it took when it ran
    summary_path = out / "summary.json"
    previous = json.loads(summary_path.read_text()).get("stage_seconds", {}) if summary_path.exists() else {}
    times = {**previous, **{k: round(v, 1) for k, v in stages.times.items() if v}}
    summary = {
        "config": to_dict(cfg),
        "results": rows,
        "stage_seconds": times,
        "this_run_seconds": round(time.perf_counter() - start, 1),
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(table)
    console.print(
        f"math_mini finished in {summary['this_run_seconds']:.0f} s this run; total of stage times "
        f"{sum(times.values()):.0f} s -> {out}"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["--config", str(DEFAULT_CONFIG), *argv]
    cfg = parse_config(Config, argv, prog="bench/math_mini/run.py", description=__doc__.split("\n")[0])
    run_protocol(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
