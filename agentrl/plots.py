"""Matplotlib (Agg) plots: training curves, a critic's value trace and report, success by method, benchmark summaries.

Every function writes a PNG and returns its path; matplotlib is imported inside them (``agentrl[train]``).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentrl.errors import AgentRLError
from agentrl.types import Episode

_INSTALL_HINT = 'plots need matplotlib: pip install "agentrl[train]"'
# Metric names that are bookkeeping, not curves.
_NOT_CURVES = {"step", "epoch", "time", "elapsed", "elapsed_s", "wall_s", "timestamp", "tokens", "samples"}
_MAX_PANELS = 15


class PlotError(AgentRLError, ValueError):
    """Input for a plot is missing or malformed; the message names the file and line or key."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise PlotError(_INSTALL_HINT) from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Reads a ``metrics.jsonl`` (one JSON object per logged step); errors name ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise PlotError(f"{path}: no such metrics file")
    rows = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # a torn last line from a crash
                break
            raise PlotError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise PlotError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    if not rows:
        raise PlotError(f"{path}: no metrics logged yet")
    return rows


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _panel_key(name: str) -> str:
    """Groups related curves on one panel: ``train/value_loss`` and ``eval/value_loss`` share one."""
    return name.split("/")[-1]


def plot_metrics(path: str | Path, out: str | Path, keys: Sequence[str] | None = None) -> Path:
    """Training curves: one panel per metric (losses, value loss, KL, lr, ...) over the logged step.

    Args:
        path: ``metrics.jsonl``; each line a JSON object, x is its ``step`` key (else the line index).
        out: the PNG to write.
        keys: metrics to draw (default: every numeric key except bookkeeping such as ``step``/``time``).
    """
    rows = read_metrics(path)
    numeric: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        x = row.get("step", i)
        if not _is_number(x):
            x = i
        for k, v in row.items():
            if k in _NOT_CURVES or not _is_number(v):
                continue
            if keys is not None and k not in keys:
                continue
            numeric.setdefault(k, []).append((float(x), float(v)))
    if keys is not None:
        missing = [k for k in keys if k not in numeric]
        if missing:
            raise PlotError(f"{path}: no numeric values for {', '.join(missing)}")
    if not numeric:
        raise PlotError(f"{path}: no numeric metrics to plot")
    panels: dict[str, list[str]] = {}
    keys_seen = {_panel_key(n) for n in numeric}
    for name in numeric:
        key = _panel_key(name)
        if key.startswith("critic_") and key[len("critic_") :] in keys_seen:  # critic_lr next to lr, ...
            key = key[len("critic_") :]
        panels.setdefault(key, []).append(name)
    names = list(panels)[:_MAX_PANELS]
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, names, strict=False):
        for name in panels[panel]:
            xs, ys = zip(*numeric[name], strict=True)
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=name)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel in {"lr", "learning_rate"} or panel.endswith("/lr"):
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if len(panels[panel]) > 1:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"training metrics: {Path(path).parent.name or Path(path).name}")
    return _save(fig, plt, out)


def plot_values(episode: Episode, out: str | Path) -> Path:
    """The critic's value at each step of one episode, with the candidates' values as dots.

    Correct steps keep the value up; a wrong step shows as a drop (the OREO/DQO papers' value traces).
    """
    values = [s.value for s in episode.steps]
    if not any(v is not None for v in values):
        raise PlotError(
            f"episode {episode.episode_id}: no critic values recorded (run eval/rollout with --critic ... --best-of K)"
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(values) + 3), 3.8))
    xs = [i + 1 for i, v in enumerate(values) if v is not None]
    ys = [v for v in values if v is not None]
    labelled = False
    for i, step in enumerate(episode.steps):
        others = [c.value for c in step.candidates or [] if c.action != step.action]
        if others:
            label = None if labelled else "other candidates"
            ax.scatter([i + 1] * len(others), others, s=14, color="0.6", zorder=2, label=label)
            labelled = True
    ax.plot(xs, ys, marker="o", color="tab:blue", zorder=3, label="V(chosen)")
    invalid = [i + 1 for i, step in enumerate(episode.steps) if not step.valid]
    for n, x in enumerate(invalid):
        ax.axvline(x, color="tab:red", alpha=0.25, label="unparsed action" if n == 0 else None)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("critic value")
    outcome = "success" if episode.success else "failure"
    title = f"{episode.task_id}\n{episode.task_type}: {outcome} in {episode.num_steps} steps"
    ax.set_title("\n".join(textwrap.fill(line, 90) for line in title.split("\n")), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, out)


def plot_results(results: Sequence[dict[str, Any]], out: str | Path, names: Sequence[str] | None = None) -> Path:
    """Grouped bars: success rate by task type (and overall, with Wilson 95% error bars) per method."""
    if not results:
        raise PlotError("plot --results: give at least one results.json")
    names = list(names) if names is not None else [str(r.get("method", f"run{i}")) for i, r in enumerate(results)]
    types = sorted({t for r in results for t in r["by_task_type"]}) + ["all"]
    plt = _pyplot()
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(types) * max(1, len(results)) ** 0.5 + 2), 4.2))
    for j, (name, r) in enumerate(zip(names, results, strict=True)):
        rates, lows, highs = [], [], []
        for t in types:
            stats = r if t == "all" else r["by_task_type"].get(t)
            if stats is None:  # this method never saw the task type: no bar (not a 0% bar)
                rates.append(float("nan"))
                lows.append(0.0)
                highs.append(0.0)
                continue
            rate = stats["success_rate"]
            lo, hi = stats.get("ci95", [rate, rate])
            rates.append(100 * rate)
            lows.append(100 * max(0.0, rate - lo))
            highs.append(100 * max(0.0, hi - rate))
        xs = [i + (j - (len(results) - 1) / 2) * width for i in range(len(types))]
        ax.bar(xs, rates, width, label=name, yerr=[lows, highs], capsize=2, error_kw={"alpha": 0.6})
    ax.set_xticks(range(len(types)))
    ax.set_xticklabels([textwrap.fill(t.replace("_", " "), 14) for t in types], fontsize=7)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title("success by task type (error bars: Wilson 95%)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(4, len(results)), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plt, out)


def plot_grouped_bars(
    groups: dict[str, dict[str, tuple[float, float | tuple[float, float]]]], out: str | Path, ylabel: str,
    title: str = "",
) -> Path:
    """Grouped bars with error bars: ``{group: {series: (value, error)}}``, one colour per series.

    ``error`` is a half-width (e.g. a std over seeds) or a ``(below, above)`` pair (e.g. the distances to a
    Wilson interval's ends). Used for benchmark summaries, one group per evaluation split.
    """
    if not groups or not any(groups.values()):
        raise PlotError("plot_grouped_bars: nothing to plot")
    series = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    plt = _pyplot()
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) * max(1, len(series)) ** 0.5 + 2), 4.2))
    top = 0.0
    for j, name in enumerate(series):
        values = [bars.get(name, (float("nan"), 0.0)) for bars in groups.values()]
        errors = [e if isinstance(e, tuple) else (e, e) for _, e in values]
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
        bars = ax.bar(xs, [v for v, _ in values], width, label=name, yerr=list(zip(*errors, strict=True)),
                      capsize=2, error_kw={"alpha": 0.6})  # fmt: skip
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        top = max([top] + [v + up for (v, _), (_, up) in zip(values, errors, strict=True) if not math.isnan(v)])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g.replace("_", " ") for g in groups])
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105 if top > 40 else max(5.0, 1.3 * top))  # small rates stay readable
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(4, len(series)), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plt, out)


def plot_critic_report(report: dict[str, Any], out: str | Path) -> Path:
    """A critic report (:func:`agentrl.critic_report.build_report`): reliability diagram and AUC by step.

    Left: mean Monte-Carlo success against mean ``V`` per calibration bin (marker area by prefix count; the
    diagonal is perfect calibration). Right: the sibling (within-problem) and pooled AUC of ``V`` after step k,
    with chance at 0.5.
    """
    try:
        bins = [b for b in report["calibration"]["bins"] if b["count"]]
        sibling = [(r["k"], r["auc"]) for r in report["sibling_auc"]["by_depth"] if r["auc"] is not None]
        pooled = [(r["k"], r["pooled"]) for r in report["pooled_auc"]["by_step"] if r["pooled"] is not None]
        ece = report["calibration"]["ece"]
    except (KeyError, TypeError) as err:
        raise PlotError(f"not a critic report (missing {err})") from None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.2))
    left.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfect calibration")
    if bins:
        most = max(b["count"] for b in bins)
        left.scatter([b["mean_value"] for b in bins], [b["mean_success"] for b in bins], zorder=3,
                     s=[20 + 180 * b["count"] / most for b in bins], color="tab:blue", label="bins")  # fmt: skip
        left.plot([b["mean_value"] for b in bins], [b["mean_success"] for b in bins], color="tab:blue", alpha=0.5)
    left.set_xlabel("mean V after the prefix")
    left.set_ylabel("Monte-Carlo success of the prefix")
    left.set_title("reliability" + ("" if ece is None else f" (ECE {ece:.3f})"))
    for name, rows, color in (("sibling AUC", sibling, "tab:orange"), ("pooled AUC", pooled, "tab:green")):
        if rows:
            right.plot(*zip(*rows, strict=True), marker="o", color=color, label=name)
    right.axhline(0.5, color="0.6", linestyle="--", label="chance")
    right.set_ylim(0, 1)
    right.set_xlabel("step k (V after step k)")
    right.set_ylabel("AUC")
    right.set_title("AUC by step")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, plt, out)


def _save(fig: Any, plt: Any, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".png":
        plt.close(fig)
        raise PlotError(f"--out {out}: plots are written as .png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
