"""Outcomes per problem: mixed-problem counts and capping positives at negatives (hand-built episodes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from agentrl.problem_outcomes import cap_positives, describe_cap, describe_outcomes, outcome_counts
from agentrl.training_data import load_tokenized
from agentrl.trajectory import TrajectoryWriter

from .helpers import episode

# problem -> outcomes of its samples: A 3 successes 1 failure, B 1/2, C 2/0, D 0/2
OUTCOMES = {"A": [True, True, False, True], "B": [False, True, False], "C": [True, True], "D": [False, False]}


def _items() -> list[SimpleNamespace]:
    return [SimpleNamespace(task_id=task, success=ok, n=f"{task}{j}")
            for task, outcomes in OUTCOMES.items() for j, ok in enumerate(outcomes)]


def test_outcome_counts_by_hand() -> None:
    """A and B have both outcomes (2 mixed); C only successes; D only failures."""
    assert outcome_counts(_items()) == {"problems": 4, "mixed_problems": 2, "all_success_problems": 1,
                                        "all_failure_problems": 1}
    assert outcome_counts([]) == {"problems": 0, "mixed_problems": 0, "all_success_problems": 0,
                                  "all_failure_problems": 0}


def test_cap_positives_keeps_one_success_per_failure_exactly() -> None:
    """Kept successes: A min(3, 1) = 1, B min(1, 2) = 1, C min(2, 0) = 0, D none -> 2 of 6 (4 dropped); every
    failure stays (1 + 2 + 0 + 2 = 5): 7 episodes kept of 11, in their original order."""
    items = _items()
    keep, counts = cap_positives(items, seed=0)
    assert counts == {"positives": 6, "positives_kept": 2, "positives_dropped": 4}
    assert len(keep) == 7 and keep == sorted(keep)
    kept = [items[i] for i in keep]
    assert [x.n for x in kept if not x.success] == ["A2", "B0", "B2", "D0", "D1"]
    assert [x.task_id for x in kept if x.success] == ["A", "B"]
    assert "B1" in {x.n for x in kept}  # B's only success always stays
    # seeded: the same seed keeps the same success of A; some seed keeps another one
    assert cap_positives(items, seed=0) == (keep, counts)
    chosen = {next(items[i].n for i in cap_positives(items, seed=s)[0] if items[i].task_id == "A" and items[i].success)
              for s in range(20)}
    assert len(chosen) > 1 and chosen <= {"A0", "A1", "A3"}
    assert describe_cap(counts) == ("cap-positives: kept 2 of 6 successes (dropped 4: at most one success per "
                                    "failure of the same problem)")


def test_describe_outcomes() -> None:
    assert describe_outcomes(outcome_counts(_items())) == (
        "rollouts: 2 of 4 problems (50.0%) are mixed (both a success and a failure); 1 all successes, 1 all failures")
    assert "no sampled episodes" in describe_outcomes({"problems": 0})


def _rollouts(path: Path, expert_for: tuple[str, ...] = ()) -> Path:
    """OUTCOMES as sampled episodes (policy react), plus an expert demonstration of each problem in ``expert_for``."""
    with TrajectoryWriter(path) as writer:
        for t, (task, outcomes) in enumerate(OUTCOMES.items()):
            for j, ok in enumerate(outcomes):
                writer.write(replace(episode(t, j, ok), task_id=task, episode_id=f"x/train/{task}/s{j}", policy="react"))
            if task in expert_for:
                writer.write(replace(episode(t, 9, True), task_id=task, episode_id=f"x/train/{task}/s9"))
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_load_tokenized_counts_mixed_rollouts_and_caps(tokenizer, tmp_path: Path) -> None:
    """An expert demonstration of D is a success but not a rollout: D stays all-failure among the rollouts.
    The cap counts it (a success of D, which has 2 failures: min(1, 2) = 1 kept): successes kept A 1, B 1, C 0,
    D 1 = 3 of 7; with the 5 failures, 8 of 12 episodes."""
    path = _rollouts(tmp_path / "r.jsonl", expert_for=("D",))
    items, counts = load_tokenized(path, tokenizer)
    assert counts["kept"] == 12 and counts["mixed_problems"] == 2 and counts["all_failure_problems"] == 1
    capped, counts = load_tokenized(path, tokenizer, cap_positives=True, seed=3)
    assert counts["kept"] == len(capped) == 8
    assert (counts["positives"], counts["positives_kept"], counts["positives_dropped"]) == (7, 3, 4)
    assert sum(not e.success for e in capped) == 5


def test_oreo_learner_prints_the_mixed_report_and_the_cap(tokenizer, tmp_path: Path) -> None:
    from agentrl.learn_config import LearnConfig
    from agentrl.learner import _training_items

    path = _rollouts(tmp_path / "r.jsonl")
    console = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    cfg = LearnConfig(algo="oreo", data=[str(path)], out=str(tmp_path / "o"), cap_positives=True)
    episodes, items, _ = _training_items(cfg, tokenizer, console)
    text = console.export_text()
    assert "rollouts: 2 of 4 problems (50.0%) are mixed" in text
    assert "cap-positives: kept 2 of 6 successes (dropped 4" in text
    assert len(episodes) == len(items) == 7
    console = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    _training_items(LearnConfig(algo="sft", data=[str(path)], out=str(tmp_path / "s")), tokenizer, console)
    assert "are mixed" not in console.export_text() and "cap-positives" not in console.export_text()
