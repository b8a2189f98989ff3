"""Resumable stages: each runs once, records its own wall time, and is skipped when its output exists.

A stage is a name, a marker path (its output: a folder, a results file, or ``finished(path)`` for a JSONL file
written episode by episode) and a call. :class:`Stages` runs it unless the marker exists, times it, and keeps the
times of every stage that ever ran in ``times.json`` beside the outputs, so a run that was killed and continued
still reports what each stage cost. Within a stage nothing is lost either: rollouts and evaluations resume their
JSONL files episode by episode, learning resumes from its last checkpoint.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from agentrl.augment import AugmentConfig, augment
from agentrl.config import ConfigError
from agentrl.envs.alfworld.generator import GenerationError, generate
from agentrl.evaluate import EvalConfig, evaluate
from agentrl.evaluation import compare_table, load_results, method_names
from agentrl.learn_config import LearnConfig, learn
from agentrl.models import tiny_model_from_trajectories
from agentrl.rollout import RolloutConfig, rollout

console = Console(highlight=False)


class StageError(RuntimeError):
    """A stage returned a failure (a non-zero exit code)."""


class Stages:
    """Runs named stages in order, skipping those whose marker exists; ``times.json`` in ``folder`` keeps times.

    ``only`` (shell patterns, e.g. ``"*: RS"``) restricts a run to the stages whose name matches one of them, so
    that independent stages of one recipe can run in separate processes; the others are passed over.
    """

    def __init__(self, folder: str | Path, only: Sequence[str] = ()):
        self.folder = Path(folder)
        self.only = tuple(only)
        self.ran: list[str] = []  # stages that ran in this process
        path = self.folder / "times.json"
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def selected(self, name: str) -> bool:
        """Whether ``name`` matches ``only`` (every stage does when ``only`` is empty)."""
        return not self.only or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.only)

    def passed_over(self, name: str) -> bool:
        """True (and says so) when ``only`` leaves ``name`` out: callers check it before they build a stage's
        config, whose checks (a critic folder, a data file) may concern outputs of stages not run yet."""
        if self.selected(name):
            return False
        console.print(f"[dim]{name}: not selected[/]")
        return True

    def run(self, name: str, done: Path, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls ``fn(*args, **kwargs)`` unless ``done`` exists or ``name`` is not selected.

        Raises:
            StageError: ``fn`` returned a non-zero int (a command's exit code).
        """
        if self.passed_over(name):
            return None
        if done.exists():
            console.print(f"[dim]{name}: done already ({done})[/]")
            return None
        console.print(Rule(f"[bold]{name}"))
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        if isinstance(result, int) and not isinstance(result, bool) and result != 0:
            raise StageError(f"stage `{name}` failed with exit code {result}")
        self.times[name] = round(time.perf_counter() - start, 1)
        self.ran.append(name)
        self._save_times()
        console.print(f"[green]{name}[/] took {self.times[name]:.0f} s")
        return result

    def _save_times(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "times.json.tmp"
        tmp.write_text(json.dumps(self.times, indent=1) + "\n")
        os.replace(tmp, self.folder / "times.json")  # a kill never leaves a torn file


def finished(path: str | Path) -> Path:
    """The marker :func:`run_rollout` writes once every episode of ``path`` is in (a file cut short has none)."""
    return Path(f"{path}.done")


def gen_tasks(root: Path, split: str, n: int, seed: int, room_size: str = "any", workers: int = 1,
              task_types: Sequence[str] = (), max_steps: int = 50) -> None:
    """``n`` expert-verified ALFWorld tasks of ``split`` under ``root`` (what ``agentrl gen alfworld`` does)."""

    types = {"task_types": list(task_types)} if task_types else {}
    try:
        generate(str(root), split, n, seed=seed, room_size=room_size, max_steps=max_steps, workers=workers, **types)
    except GenerationError as err:
        raise ConfigError(str(err)) from None


def run_rollout(cfg: RolloutConfig) -> int:
    """A rollout that resumes ``cfg.out`` (a file cut short by a kill is continued), then marks it finished."""
    cfg.resume = True
    summary = rollout(cfg)
    if summary["written"] + summary["skipped"] != summary["planned"]:
        return 1
    finished(cfg.out).touch()
    return 0


def run_evaluation(cfg: EvalConfig) -> dict[str, Any]:
    """An evaluation that resumes its trajectories file; prints the method's success line."""
    cfg.resume = cfg.trajectories is not None
    results = evaluate(cfg)
    console.print(f"{cfg.method_name}: {results['successes']}/{results['episodes']} "
                  f"= {100 * results['success_rate']:.1f}% success")
    return results


def run_learning(cfg: LearnConfig) -> None:
    """:func:`agentrl.learn_config.learn` with resume (a stage that died part-way continues from its checkpoint),
    then the marker :func:`finished` of ``cfg.out``: policy and critic are both written by then."""
    cfg.resume = True
    learn(cfg)
    finished(cfg.out).touch()


def run_augmentation(cfg: AugmentConfig) -> None:
    """:func:`agentrl.augment.augment` (it writes its output whole or not at all, so the file is its marker)."""
    counts = augment(cfg)
    console.print(f"{counts['episodes']} demonstrations -> {counts['copies']} renamed copies "
                  f"(+ the originals) in {counts['seconds']:.1f} s")


def make_tiny_model(data: Path, out: Path, seed: int, **sizes: Any) -> Path:
    """A from-scratch model whose tokenizer is fitted to the chats of the trajectory file ``data``."""
    return tiny_model_from_trajectories(data=str(data), out=str(out), seed=seed, **sizes)


def compare(paths: Sequence[Path]) -> None:
    """Prints the results files side by side."""
    results = [load_results(p) for p in paths]
    console.print(compare_table(results, method_names(results, [str(p) for p in paths])))
