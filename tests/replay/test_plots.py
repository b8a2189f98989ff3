"""Plots write real PNG files (checked by signature and size); bad input fails with a named file/key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentrl.cli import main
from agentrl.evaluation import summarize, write_results
from agentrl.plots import PlotError, plot_metrics

from .conftest import make_episode

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 5_000


def test_metrics_plot(tmp_path: Path) -> None:
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    lines = [json.dumps({"step": s, "loss": math.exp(-s / 5), "value_loss": 1 / (s + 1), "kl": 0.01 * s,
                         "lr": 5e-6, "time": s, "note": "text"}) for s in range(12)]
    metrics.write_text("\n".join(lines) + "\n{\"step\": 12, \"lo")  # torn last line is tolerated
    out = tmp_path / "curves.png"
    assert main(["plot", "--metrics", str(metrics), "--out", str(out)]) == 0
    assert _is_png(out)


def test_metrics_errors(tmp_path: Path) -> None:
    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"step": 0, "loss": 1}\nnot json\n{"step": 1, "loss": 0.5}\n')
    with pytest.raises(PlotError, match=r"metrics.jsonl:2: invalid JSON"):
        plot_metrics(bad, tmp_path / "x.png")
    with pytest.raises(PlotError, match="no numeric values for nope"):
        plot_metrics(_good(tmp_path), tmp_path / "x.png", keys=["nope"])


def _good(tmp_path: Path) -> Path:
    path = tmp_path / "good.jsonl"
    path.write_text('{"step": 0, "loss": 1}\n{"step": 1, "loss": 0.5}\n')
    return path


def test_values_plot(trajectory_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "values.png"
    assert main(["plot", "--trajectories", str(trajectory_file), "--episode", "0", "--out", str(out)]) == 0
    assert _is_png(out)
    # the second episode has no values: a clear error, exit 2
    assert main(["plot", "--trajectories", str(trajectory_file), "--episode", "1", "--out", str(out)]) == 2


def test_results_plot(tmp_path: Path) -> None:
    a = write_results(tmp_path / "a.json", summarize([make_episode(), make_episode("t2", success=False)], method="a"))
    b = write_results(tmp_path / "b.json", summarize([make_episode()], method="b"))
    out = tmp_path / "success.png"
    assert main(["plot", "--results", str(a), str(b), "--out", str(out)]) == 0
    assert _is_png(out)


def test_plot_cli_checks(tmp_path: Path) -> None:
    assert main(["plot", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["plot", "--metrics", "m.jsonl", "--results", "a.json", "--out", "x.png"]) == 2
    assert main(["plot", "--metrics", str(_good(tmp_path)), "--out", str(tmp_path / "x.jpg")]) == 2


def test_grouped_bars_scale_to_small_rates(tmp_path: Path, monkeypatch) -> None:
    import agentrl.plots as plots

    limits = []
    save = plots._save

    def capture(fig, plt, out):
        limits.append(fig.axes[0].get_ylim())
        return save(fig, plt, out)

    monkeypatch.setattr(plots, "_save", capture)
    small = {"valid_unseen": {"SFT": (0.0, 0.0), "OREO": (3.0, 1.0)}, "valid_seen": {"SFT": (4.0, 0.0)}}
    assert _is_png(plots.plot_grouped_bars(small, tmp_path / "small.png", ylabel="success %"))
    assert _is_png(plots.plot_grouped_bars({"seen": {"SFT": (70.0, 5.0)}}, tmp_path / "big.png", ylabel="%"))
    assert limits == [(0.0, pytest.approx(5.2)), (0.0, 105.0)]  # 1.3 x the highest bar + error; full scale above 40%
