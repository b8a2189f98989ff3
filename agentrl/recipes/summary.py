"""A recipe's results aggregated over seeds: success mean ± std per target x method, tables, a plot.

:func:`aggregate` reads every finished evaluation (``OUT/seed<s>/results/<target>/<method>.json``); a seed still
running simply contributes nothing yet. :func:`markdown` renders the main table (one seed: successes/episodes
with a Wilson 95% interval; several: mean ± std over seeds), the share of commands the engine answered
"Nothing happens." (ALFWorld: progress shows there before it shows in success) and, per target, success by task
type; :func:`paired` adds the ``compare`` pairs' paired bootstraps over (seed, task). :func:`write_summary` writes ``summary.json``, ``summary.md`` and ``summary.png``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from agentrl.config import to_dict
from agentrl.evaluation import load_results
from agentrl.paired import PairedError, outcomes, paired_bootstrap
from agentrl.plots import PlotError, plot_grouped_bars
from agentrl.recipes.config import RecipeConfig, method_names, result_stem
from agentrl.recipes.stages import console
from agentrl.trajectory import iter_episodes


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def nothing_happens(trajectories: Path) -> float | None:
    """Share of the agent's commands answered "Nothing happens." (None: no file, or no commands in it)."""
    if not trajectories.exists():
        return None
    answers = [m["content"] for ep in iter_episodes(trajectories) for m in ep.messages[2:] if m["role"] == "user"]
    return sum(a.startswith("Nothing happens") for a in answers) / len(answers) if answers else None


def aggregate_results(results: list[dict[str, Any]], idle: list[float]) -> dict[str, Any]:
    """One row: success over the seeds' results (mean ± std, pooled counts, per task type)."""
    mean, std = mean_std([r["success_rate"] for r in results])
    types = sorted({t for r in results for t in r["by_task_type"]})
    by_type = {t: mean_std([r["by_task_type"].get(t, {}).get("success_rate", 0.0) for r in results]) for t in types}
    return {"mean": mean, "std": std, "seeds": len(results), "episodes": results[0]["episodes"],
            "successes": sum(r["successes"] for r in results), "ci95": results[0]["ci95"],
            "mean_steps": statistics.fmean(r["mean_steps"] for r in results),
            "by_task_type": {t: {"mean": m, "std": s} for t, (m, s) in by_type.items()},
            "nothing_happens": statistics.fmean(idle) if idle else None}  # fmt: skip


def aggregate(cfg: RecipeConfig) -> dict[str, dict[str, Any]]:
    """``{target: {method: row}}`` over the seeds whose evaluation finished (rows of :func:`aggregate_results`)."""
    out = Path(cfg.out)
    table: dict[str, dict[str, Any]] = {}
    for target in cfg.eval_on:
        rows = {}
        for method in method_names(cfg):
            paths = [out / f"seed{s}" / "results" / target / f"{result_stem(method)}.json" for s in cfg.seeds]
            paths = [p for p in paths if p.exists()]
            if paths:
                idle = [x for p in paths if (x := nothing_happens(p.with_suffix(".jsonl"))) is not None] \
                    if cfg.env == "alfworld" else []  # only ALFWorld's engine answers "Nothing happens."
                rows[method] = aggregate_results([load_results(p) for p in paths], idle)
        table[target] = rows
    return table


def paired(cfg: RecipeConfig) -> dict[str, list[dict[str, Any]]]:
    """``{target: [comparison]}``: each ``compare`` pair's paired bootstrap over the (seed, task) units both
    methods finished (:func:`agentrl.paired.paired_bootstrap`); a pair with nothing in common yet is left out."""
    out = Path(cfg.out)
    found: dict[str, list[dict[str, Any]]] = {}
    pairs = cfg.comparisons()
    for target in cfg.eval_on:
        folders = {s: out / f"seed{s}" / "results" / target for s in cfg.seeds}
        runs = {m: outcomes({s: f / f"{result_stem(m)}.jsonl" for s, f in folders.items()})
                for m in dict.fromkeys(m for pair in pairs for m in pair)}  # each method's files read once
        for a, b in pairs:
            try:
                result = paired_bootstrap(runs[a], runs[b])
            except PairedError:
                continue
            found.setdefault(target, []).append({"a": a, "b": b, **result.to_dict()})
    return found


def paired_markdown(comparisons: dict[str, list[dict[str, Any]]]) -> str:
    """One table per target: A - B in points with the bootstrap 95% interval and the discordant pairs."""
    lines: list[str] = []
    for target, rows in comparisons.items():
        lines += ["", f"{target}, paired bootstrap over (seed, task) pairs (10,000 resamples):", "",
                  "| A vs B | pairs | A | B | A - B (points) | 95% CI | P(A - B <= 0) | only A / only B solved |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lo, hi = r["ci95"]
            lines.append(f"| {r['a']} vs {r['b']} | {r['units']} | {100 * r['a_rate']:.1f}% | {100 * r['b_rate']:.1f}% "
                         f"| {100 * r['delta']:+.1f} | [{100 * lo:+.1f}, {100 * hi:+.1f}] | {r['p_not_better']:.3f} "
                         f"| {r['a_only']} / {r['b_only']} |")
    return "\n".join(lines) + ("\n" if lines else "")


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row["seeds"] == 1:
        lo, hi = row["ci95"]
        return f"{row['successes']}/{row['episodes']} = {100 * row['mean']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f} ({row['seeds']} seeds)"


def markdown(table: dict[str, dict[str, Any]]) -> str:
    """The main table (+ "nothing happens" columns where measured) and per-target task-type tables."""
    targets = list(table)
    methods = list(dict.fromkeys(m for rows in table.values() for m in rows))
    idle = [t for t in targets if any(r["nothing_happens"] is not None for r in table[t].values())]
    heads = [*targets, *(f"nothing happens, {t}" for t in idle)]
    lines = ["| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for m in methods:
        cells = [_cell(table[t].get(m)) for t in targets]
        for t in idle:
            share = (table[t].get(m) or {}).get("nothing_happens")
            cells.append("-" if share is None else f"{100 * share:.0f}%")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for target, rows in table.items():
        types = sorted({t for r in rows.values() for t in r["by_task_type"]})
        if len(types) < 2:
            continue
        lines += ["", f"{target}, success % by task type (mean over seeds):", "",
                  "| method | " + " | ".join(t.replace("_", " ") for t in types) + " |", "|---|" + "---|" * len(types)]
        for m, r in rows.items():
            cells = [f"{100 * r['by_task_type'][t]['mean']:.0f}" if t in r["by_task_type"] else "-" for t in types]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stage_seconds(cfg: RecipeConfig) -> dict[str, float]:
    """Wall time of every stage that ran, over all runs of the recipe (``times.json`` of OUT and each seed)."""
    out = Path(cfg.out)
    times: dict[str, float] = {}
    for path in [out / "times.json", *(out / f"seed{s}" / "times.json" for s in cfg.seeds)]:
        if path.is_file():
            times.update(json.loads(path.read_text()))
    return times


def bar(row: dict[str, Any]) -> tuple[float, float | tuple[float, float]]:
    """A row's bar in percent: mean ± std over several seeds; one seed: its rate and Wilson 95% interval."""
    mean = 100 * row["mean"]
    if row["seeds"] > 1:
        return mean, 100 * row["std"]
    low, high = (100 * x for x in row["ci95"])
    return mean, (max(0.0, mean - low), max(0.0, high - mean))


def error_bars(seeds: set[int]) -> str:
    """What the plot's error bars are, given the rows' seed counts (:func:`bar`)."""
    if seeds == {1}:
        return "one seed: Wilson 95%"
    if 1 not in seeds:
        return "mean ± std over seeds"
    return "one seed: Wilson 95%; several: mean ± std"


def write_summary(cfg: RecipeConfig) -> dict[str, Any]:
    """Writes ``summary.json``, ``summary.md`` and (with matplotlib) ``summary.png``; prints the table."""
    out = Path(cfg.out)
    table = aggregate(cfg)
    times = stage_seconds(cfg)
    comparisons = paired(cfg)
    summary = {"name": cfg.name, "config": to_dict(cfg), "results": table, "paired": comparisons,
               "stage_seconds": times, "stage_seconds_total": round(sum(times.values()), 1)}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = markdown(table) + paired_markdown(comparisons)
    (out / "summary.md").write_text(text)
    groups = {t: {m: bar(r) for m, r in rows.items()} for t, rows in table.items()}
    seeds = {r["seeds"] for rows in table.values() for r in rows.values()}
    try:
        plot_grouped_bars(groups, out / "summary.png", ylabel=f"success % ({error_bars(seeds)})", title=cfg.name)
    except (PlotError, ImportError) as err:  # no matplotlib, or nothing finished yet: the tables still stand
        console.print(f"[dim]no summary plot: {err}[/]")
    console.print(text, soft_wrap=True)
    return summary
