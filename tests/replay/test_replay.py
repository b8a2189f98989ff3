"""The replay view rendered through a recording console: text checks, wrapping, selection, export."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from agentrl.cli import main
from agentrl.replay import EpisodeView, ReplayError, play, select_episode, sparkline, split_task
from agentrl.trajectory import read_episodes

from .conftest import make_episode


def _render(episode, width: int = 100) -> str:
    console = Console(record=True, width=width, file=open("/dev/null", "w"))  # noqa: SIM115
    play(episode, console)
    return console.export_text()


def test_view_shows_task_room_steps_candidates_and_banner() -> None:
    text = _render(make_episode())
    assert "put a clean mug in coffeemachine." in text
    assert "You are in the middle of a room" in text
    assert "Welcome to TextWorld" not in text  # the banner line is noise
    assert "go to countertop 1" in text and "thought number 0" in text
    assert "You arrive at countertop 1" in text  # env's answer to step 1 (= step 2's observation)
    assert "You move the mug 1 to the coffeemachine 1." in text  # last answer comes from the chat
    assert "value -4.000" in text and "-5.500" in text  # chosen value and the other candidate's
    assert "▶" in text and "2 candidates" in text
    assert "SUCCESS in 4 steps" in text
    assert sparkline([-4, -3, -2, -1]) in text


def test_failure_without_values_has_no_sparkline() -> None:
    text = _render(make_episode(success=False, values=False))
    assert "FAILURE after 4 steps" in text
    assert "value " not in text and "candidates" not in text


def test_chosen_candidate_is_marked_not_the_best_one() -> None:
    episode = make_episode()
    episode.steps[0].candidates[1].value = 10.0  # a candidate better than the one acted on
    lines = [line for line in _render(episode).splitlines() if "▶" in line]
    assert "go to countertop 1" in lines[0] and "look" not in lines[0]


@pytest.mark.parametrize("width", [40, 200])
def test_wraps_at_any_width(width: int) -> None:
    episode = make_episode()
    episode.steps[1].observation = "word " * 200
    text = _render(episode, width=width)
    assert all(len(line) <= width for line in text.splitlines())
    assert text.count("word") == 200  # folded, not cropped


def test_sparkline_scales_and_handles_gaps() -> None:
    assert sparkline([0.0, 1.0]) == "▁█"
    assert sparkline([2.0, None, 2.0]) == "▅ ▅"
    assert sparkline([None]) == ""


def test_split_task_prefers_explicit_task() -> None:
    assert split_task("Room text. Your task is to: do x.") == ("do x.", "Room text.")
    assert split_task("What is 2+2?", task="add") == ("add", "What is 2+2?")
    assert split_task("What is 2+2?") == ("What is 2+2?", "")


def test_select_episode(trajectory_file: Path) -> None:
    episodes = read_episodes(trajectory_file)
    assert select_episode(episodes, -1).task_id == "look_at-Book-3"
    assert select_episode(episodes, task_id="look_at-Book-3").success is False
    with pytest.raises(ReplayError, match="out of range.*2 episode"):
        select_episode(episodes, 5)
    with pytest.raises(ReplayError, match="no episode with task id `nope`.*look_at-Book-3"):
        select_episode(episodes, task_id="nope")


def test_episode_without_steps_renders() -> None:
    episode = make_episode()
    episode.steps = []
    view = EpisodeView.from_episode(episode)
    assert view.task == "put a clean mug in coffeemachine."
    assert "0 steps" in _render(episode)


def test_cli_replay_no_delay_and_svg_export(trajectory_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ep.svg"
    assert main(["replay", str(trajectory_file), "--episode", "0", "--no-delay", "--export", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "go to countertop 1" in printed  # the first action
    svg = out.read_text()
    assert svg.startswith("<svg") and "countertop" in svg
    html = tmp_path / "ep.html"
    assert main(["replay", str(trajectory_file), "--task-id", "look_at-Book-3", "--no-delay",
                 "--export", str(html)]) == 0
    assert "FAILURE" in html.read_text()


def test_cli_replay_errors(trajectory_file: Path, tmp_path: Path) -> None:
    assert main(["replay", str(trajectory_file), "--episode", "9"]) == 2
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["replay", str(trajectory_file), "--export", "x.pdf"]) == 2
    assert main(["replay", str(trajectory_file), "--episode", "0", "--task-id", "x"]) == 2


def test_admissible_candidates_show_log_pi_and_score_and_survive_a_round_trip(tmp_path: Path) -> None:
    """Best-of-K over admissible commands records log pi and score = V + c log pi; replay ranks by the score."""
    from agentrl.trajectory import TrajectoryWriter
    from agentrl.types import Candidate

    episode = make_episode()
    episode.steps[0].candidates = [
        Candidate("go to countertop 1", -4.0, logprob=-1.0, tokens=5, score=-4.1),  # -4.0 + 0.5 * (-1.0 / 5)
        Candidate("look", -3.9, logprob=-6.0, tokens=2, score=-5.4),  # higher V, lower score: not chosen
    ]
    with TrajectoryWriter(tmp_path / "e.jsonl") as writer:
        writer.write(episode)
    (back,) = read_episodes(tmp_path / "e.jsonl")
    assert back.steps[0].candidates == episode.steps[0].candidates
    text = _render(back)
    assert "log pi" in text and "score" in text and "-6.00" in text and "-5.400" in text
    chosen = next(line for line in text.splitlines() if "▶" in line)
    assert "go to countertop 1" in chosen and "-4.100" in chosen
    rows = [line for line in text.splitlines() if "-4.100" in line or "-5.400" in line]
    assert "go to countertop 1" in rows[0] and "look" in rows[1]  # sorted by score, not by value
