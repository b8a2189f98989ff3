"""Evaluate a policy (optionally critic-guided: best-of-K, step beam) and write success tables: `agentrl eval`."""

from __future__ import annotations

from rich.console import Console

from agentrl.evaluate import EvalConfig as Config
from agentrl.evaluate import evaluate
from agentrl.evaluation import compare_table, load_results, method_names, results_table

__all__ = ["Config", "run"]


def run(cfg: Config) -> int:
    console = Console()
    if cfg.compare:
        results = [load_results(p) for p in cfg.compare]
        console.print(compare_table(results, method_names(results, cfg.compare)))
        return 0
    results = evaluate(cfg)
    console.print(results_table(results))
    lo, hi = results["ci95"]
    console.print(
        f"success {results['successes']}/{results['episodes']} = {100 * results['success_rate']:.1f}% "
        f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}), mean steps {results['mean_steps']:.1f} -> {cfg.out}"
    )
    return 0
