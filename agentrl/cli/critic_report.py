"""Measure a critic: within-problem (sibling-step) AUC, pooled AUC, calibration: `agentrl critic-report`."""

from __future__ import annotations

from rich.console import Console

from agentrl.critic_probe import CriticReportConfig as Config
from agentrl.critic_probe import critic_report
from agentrl.critic_report import report_tables

__all__ = ["Config", "run"]


def run(cfg: Config) -> int:
    report = critic_report(cfg)
    console = Console()
    for table in report_tables(report):
        console.print(table)
    console.print(f"wrote {cfg.out}" + (f" and {cfg.plot}" if cfg.plot else ""))
    return 0
