"""Multi-stage runs built from the commands: the demo and iterative OREO.

Each stage is one command (`gen`, `rollout`, `model`, `learn`, `eval`) called through its ``Config`` and ``run``,
so every check a user gets on the command line applies here too. A stage whose output already exists is skipped,
so an interrupted pipeline picks up where it stopped and nothing already done is lost.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from agentrl.config import ConfigError
from agentrl.evaluate import EvalConfig
from agentrl.evaluate import evaluate as run_evaluation
from agentrl.rollout import RolloutConfig
from agentrl.rollout import rollout as run_rollout

console = Console(highlight=False)


class Stages:
    """Runs named stages in order, skipping those whose marker file exists, and times each one.

    ``only`` (shell patterns, e.g. ``"*: RS"``) restricts a run to the stages whose name matches one of them, so
    that independent stages of one pipeline can run in separate processes; the others are passed over.
    """

    def __init__(self, folder: Path, only: Sequence[str] = ()):
        self.folder = folder
        self.only = tuple(only)
        self.times: dict[str, float] = {}

    def selected(self, name: str) -> bool:
        return not self.only or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.only)

    def run(self, name: str, done: Path, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Calls ``fn(**kwargs)`` unless ``done`` exists or ``name`` is not selected; a non-zero int is a failure."""
        if not self.selected(name):
            console.print(f"[dim]{name}: not selected[/]")
            return None
        if done.exists():
            console.print(f"[dim]{name}: done already ({done})[/]")
            self.times[name] = 0.0
            return None
        console.print(Rule(f"[bold]{name}"))
        start = time.perf_counter()
        result = fn(**kwargs)
        if isinstance(result, int) and result != 0:
            raise RuntimeError(f"stage `{name}` failed with exit code {result}")
        self.times[name] = time.perf_counter() - start
        console.print(f"[green]{name}[/] took {self.times[name]:.0f} s")
        return result


def gen_tasks(root: Path, split: str, n: int, seed: int, room_size: str, workers: int = 1,
              task_types: list[str] | None = None) -> int:
    """``n`` expert-verified ALFWorld tasks of ``split`` under ``root`` (see ``agentrl gen alfworld``)."""
    from agentrl.envs.alfworld.generator import GenerationError, generate

    types = {"task_types": list(task_types)} if task_types else {}
    try:
        generate(str(root), split, n, seed=seed, room_size=room_size, workers=workers, **types)
    except GenerationError as err:
        raise ConfigError(str(err)) from None
    return 0


def base_model(stages: Stages, label: str, model: str, data: Path, folder: Path, seed: int, **sizes: Any) -> str:
    """``model`` as given, or for ``tiny`` a from-scratch model built once in ``folder`` (stage ``label``).

    The tiny model's tokenizer is fitted to the chats of the trajectory file ``data``; ``sizes`` are
    :func:`agentrl.models.build_tiny_model` keywords (``hidden_size``, ``num_layers``, ``vocab_size``, ...).
    """
    if model != "tiny":
        return model
    from agentrl.models import tiny_model_from_trajectories

    stages.run(label, folder / "config.json", tiny_model_from_trajectories, data=str(data), out=str(folder),
               seed=seed, **sizes)  # fmt: skip
    return str(folder)


def finished(path: str | Path) -> Path:
    """The marker :func:`rollout` writes once every episode of ``path`` is in (a file cut short by a kill has none)."""
    return Path(f"{path}.done")


def rollout(**kwargs: Any) -> int:
    """`agentrl rollout` with ``--resume``: a file cut short by a kill is continued, then marked :func:`finished`."""
    summary = run_rollout(RolloutConfig(**{"resume": True, **kwargs}))
    if summary["written"] + summary["skipped"] != summary["planned"]:
        return 1
    finished(kwargs["out"]).touch()
    return 0


def learn(**kwargs: Any) -> int:
    """`agentrl learn` with ``--resume``: a stage that died part-way continues from its last checkpoint."""
    from agentrl.cli import learn as learn_cmd

    return learn_cmd.run(learn_cmd.Config(resume=True, **kwargs))


def evaluate(**kwargs: Any) -> dict[str, Any]:
    """`agentrl eval`; with ``trajectories`` it resumes, so an evaluation cut short by a kill is continued."""
    cfg = EvalConfig(**{"resume": kwargs.get("trajectories") is not None, **kwargs})
    results = run_evaluation(cfg)
    console.print(
        f"{cfg.method_name}: {results['successes']}/{results['episodes']} "
        f"= {100 * results['success_rate']:.1f}% success"
    )
    return results


def compare(paths: list[Path]) -> None:
    from agentrl.evaluation import compare_table, load_results, method_names

    results = [load_results(p) for p in paths]
    console.print(compare_table(results, method_names(results, [str(p) for p in paths])))
