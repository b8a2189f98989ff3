"""Success statistics of finished episodes: Wilson intervals, per-task-type tables, ``results.json``, compare.

Everything here is pure: it takes :class:`~agentrl.types.Episode` lists or result dicts and returns numbers or
``rich`` tables. Running the episodes is the rollout engine's job (``agentrl.rollout``); ``agentrl eval`` glues
the two together.

``results.json`` (what :func:`summarize` returns and :func:`write_results` stores)::

    {"method": "react+best-of-3", "success_rate": 0.5, "successes": 3, "episodes": 6, "ci95": [0.19, 0.81],
     "mean_steps": 12.3, "errors": 0, "by_task_type": {"pick_and_place_simple": {"success_rate": 1.0, "n": 2,
     "successes": 2, "ci95": [...], "mean_steps": 7.0}, ...}, "config": {...}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agentrl.errors import AgentRLError
from agentrl.types import Episode

RESULTS_KEYS = ("success_rate", "episodes", "ci95", "mean_steps", "by_task_type")


class ResultsError(AgentRLError, ValueError):
    """A results file is missing or malformed; the message names the file and the key."""


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With ``p = successes / n``::

        centre = (p + z²/2n) / (1 + z²/n)
        half   = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²)
        [lo, hi] = [centre - half, centre + half]

    Unlike the normal interval it stays inside [0, 1] and is not degenerate at p = 0 or 1
    (e.g. 6/6 gives about [0.61, 1.0]).

    Args:
        successes: number of successful episodes, ``0 <= successes <= n``.
        n: number of episodes.
        z: the normal quantile (1.96 for 95%).

    Returns:
        ``(lo, hi)``; ``(0.0, 1.0)`` when ``n == 0`` (nothing is known).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _group_stats(episodes: Sequence[Episode]) -> dict[str, Any]:
    n = len(episodes)
    successes = sum(1 for ep in episodes if ep.success)
    lo, hi = wilson_interval(successes, n)
    return {
        "success_rate": successes / n if n else 0.0,
        "successes": successes,
        "n": n,
        "ci95": [round(lo, 6), round(hi, 6)],
        "mean_steps": (sum(ep.num_steps for ep in episodes) / n) if n else 0.0,
    }


def summarize(
    episodes: Iterable[Episode], config: dict[str, Any] | None = None, method: str | None = None
) -> dict[str, Any]:
    """Success rate, Wilson 95% interval, mean steps, and the same per task type.

    Args:
        episodes: finished episodes (one per task and sample); episodes with an ``error`` count as failures.
        config: the full config of the run (stored verbatim under ``config``).
        method: a short name shown by ``--compare`` (defaults to the episodes' policy names).

    Returns:
        The ``results.json`` mapping described in the module docstring.
    """
    episodes = list(episodes)
    overall = _group_stats(episodes)
    by_type: dict[str, list[Episode]] = {}
    for ep in episodes:
        by_type.setdefault(ep.task_type or "unknown", []).append(ep)
    if method is None:
        policies = sorted({ep.policy for ep in episodes})
        method = "+".join(policies) if policies else "none"
    return {
        "method": method,
        "success_rate": overall["success_rate"],
        "successes": overall["successes"],
        "episodes": overall["n"],
        "ci95": overall["ci95"],
        "mean_steps": overall["mean_steps"],
        "errors": sum(1 for ep in episodes if ep.error),
        "by_task_type": {
            name: {k: v for k, v in _group_stats(group).items()} for name, group in sorted(by_type.items())
        },
        "config": dict(config or {}),
    }


def write_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Writes ``results.json`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """Reads a ``results.json`` and checks the keys :func:`compare_table` needs."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object at the top level")
    missing = [k for k in RESULTS_KEYS if k not in data]
    if missing:
        raise ResultsError(f"{path}: missing key(s) {', '.join(missing)} (not an `agentrl eval` results file?)")
    if not isinstance(data["by_task_type"], dict):
        raise ResultsError(f"{path}: `by_task_type` must be an object of task type -> stats")
    for name, stats in data["by_task_type"].items():
        if not isinstance(stats, dict) or "success_rate" not in stats or "n" not in stats:
            raise ResultsError(f"{path}: by_task_type.{name} needs `success_rate` and `n`")
    data.setdefault("method", path.stem)
    return data


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f}"


def results_table(results: dict[str, Any], title: str | None = None) -> Any:
    """A ``rich`` table of one run: one row per task type, then the total with its interval."""
    from rich.table import Table

    table = Table(title=title or f"{results.get('method', 'results')}: success by task type", title_justify="left")
    table.add_column("task type", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("success %", justify="right")
    table.add_column("95% CI (Wilson)", justify="right")
    table.add_column("mean steps", justify="right")
    for name, stats in results["by_task_type"].items():
        lo, hi = stats.get("ci95", wilson_interval(stats.get("successes", 0), stats["n"]))
        table.add_row(
            name, str(stats["n"]), _pct(stats["success_rate"]), f"[{_pct(lo)}, {_pct(hi)}]",
            f"{stats.get('mean_steps', float('nan')):.1f}",
        )
    lo, hi = results["ci95"]
    table.add_section()
    table.add_row(
        "[bold]all[/bold]", str(results["episodes"]), f"[bold]{_pct(results['success_rate'])}[/bold]",
        f"[{_pct(lo)}, {_pct(hi)}]", f"{results['mean_steps']:.1f}",
    )
    return table


def method_names(results: Sequence[dict[str, Any]], paths: Sequence[str | Path] | None = None) -> list[str]:
    """Column names for ``--compare``: each run's method, made unique with the file stem when they clash."""
    names = [str(r.get("method") or f"run{i}") for i, r in enumerate(results)]
    if len(set(names)) < len(names) and paths is not None:
        names = [f"{n} ({Path(p).stem})" for n, p in zip(names, paths, strict=True)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return unique


def compare_table(results: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> Any:
    """Methods side by side (the OREO paper's Table 2 shape): rows are task types, columns are methods.

    The best success rate of each row is bold; the last row is the overall rate with its Wilson interval.
    """
    from rich.table import Table

    if not results:
        raise ResultsError("compare: no results given")
    names = list(names) if names is not None else method_names(results)
    table = Table(title="success rate (%) by task type", title_justify="left")
    table.add_column("task type", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    types = sorted({t for r in results for t in r["by_task_type"]})

    def row(cells: list[float | None], fmt: Any) -> list[str]:
        best = max((c for c in cells if c is not None), default=None)
        out = []
        for c in cells:
            if c is None:
                out.append("-")
            else:
                text = fmt(c)
                out.append(f"[bold green]{text}[/bold green]" if len(cells) > 1 and c == best else text)
        return out

    for t in types:
        cells: list[float | None] = []
        ns = []
        for r in results:
            stats = r["by_task_type"].get(t)
            cells.append(None if stats is None else stats["success_rate"])
            ns.append(None if stats is None else stats["n"])
        texts = row(cells, _pct)
        texts = [f"{x} (n={n})" if n is not None else x for x, n in zip(texts, ns, strict=True)]
        table.add_row(t, *texts)
    table.add_section()
    overall = row([r["success_rate"] for r in results], _pct)
    table.add_row("[bold]all[/bold]", *[f"{x} (n={r['episodes']})" for x, r in zip(overall, results, strict=True)])
    table.add_row(
        "95% CI", *[f"[{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}]" for r in results]
    )
    table.add_row("mean steps", *[f"{r['mean_steps']:.1f}" for r in results])
    return table
