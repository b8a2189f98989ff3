"""Trajectory JSONL: round trip, fsync'd appends, torn last line tolerated, other damage named by file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrl.trajectory import TrajectoryError, TrajectoryWriter, finished_ids, read_episodes
from agentrl.types import SCHEMA_VERSION, Candidate, Episode, Step, episode_id


def make_episode(i: int, success: bool = True) -> Episode:
    return Episode(
        episode_id=episode_id("alfworld", "train", f"task-{i}", 0),
        task_id=f"task-{i}",
        env_id="agentrl/ALFWorld-v0",
        split="train",
        task_type="pick_and_place_simple",
        policy="expert",
        success=success,
        reward=float(success),
        steps=[
            Step(observation="You are in a room.", action="go to desk 1", thought="find it", value=0.5,
                 candidates=[Candidate(action="go to desk 1", value=0.5), Candidate(action="look", value=0.1)]),
            Step(observation="On the desk 1 you see a pen 1.", action="take pen 1 from desk 1", reward=1.0),
        ],
        messages=[{"role": "user", "content": "You are in a room."}, {"role": "assistant", "content": "Action: look"}],
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as writer:
        for i in range(3):
            writer.write(make_episode(i, success=i != 1))
    episodes = read_episodes(path)
    assert episodes == [make_episode(i, success=i != 1) for i in range(3)]
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first)[0] == "schema" and first["schema"] == SCHEMA_VERSION
    assert finished_ids(path) == {e.episode_id for e in episodes}


def test_episode_id_is_deterministic() -> None:
    assert episode_id("math", "test", "q7", 2) == episode_id("math", "test", "q7", 2)
    assert episode_id("math", "test", "q7", 2) != episode_id("math", "test", "q7", 3)


def test_torn_last_line_is_skipped_and_cut_before_next_append(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as writer:
        writer.write(make_episode(0))
    with open(path, "a") as f:
        f.write(json.dumps(make_episode(1).to_dict())[:40])  # a crash mid-write
    assert [e.task_id for e in read_episodes(path)] == ["task-0"]
    with TrajectoryWriter(path) as writer:  # resume: the torn tail is cut, then we append
        writer.write(make_episode(2))
    assert [e.task_id for e in read_episodes(path)] == ["task-0", "task-2"]


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = json.dumps(make_episode(0).to_dict())
    path.write_text(good + "\n{not json\n" + good + "\n")
    with pytest.raises(TrajectoryError, match=r"t\.jsonl:2: invalid JSON"):
        read_episodes(path)


def test_missing_field_and_wrong_schema(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    data = make_episode(0).to_dict()
    del data["task_id"]
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(TrajectoryError, match=r"t\.jsonl:1: missing field\(s\) task_id"):
        read_episodes(path)
    data = make_episode(0).to_dict() | {"schema": 99}
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(TrajectoryError, match="unsupported trajectory schema 99"):
        read_episodes(path)


def test_loads_with_hf_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as writer:
        for i in range(2):
            writer.write(make_episode(i))
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == 2 and ds[0]["steps"][0]["action"] == "go to desk 1"
