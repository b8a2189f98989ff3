"""agentrl/ALFWorld-v0 and the offline generator, on the real alfworld/TextWorld engine."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("alfworld")

import agentrl.envs  # noqa: E402,F401  (registers the envs)
from agentrl.envs.alfworld.env import find_tasks  # noqa: E402
from agentrl.envs.alfworld.pddl import TASK_TYPES  # noqa: E402

pytestmark = pytest.mark.alfworld


def test_expert_solves_every_generated_task(alfworld_root: Path) -> None:
    """The must-show: gen --n 12 --seed 0, then following info["expert_action"] wins 12/12, all six types."""
    env = gym.make("agentrl/ALFWorld-v0", data=alfworld_root, split="train")
    task_ids = env.unwrapped.task_ids
    assert len(task_ids) == 12 and task_ids == sorted(task_ids)
    won, types = 0, set()
    for task_id in task_ids:
        obs, info = env.reset(options={"task_id": task_id})
        assert "Your task is to:" in obs and info["task"] and info["task_id"] == task_id
        assert info["expert_action"] == "look" and not info["won"]
        total, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            assert info["expert_action"] in info["admissible_actions"] or info["expert_action"] == "look"
            obs, reward, terminated, truncated, info = env.step(info["expert_action"])
            assert reward in (0.0, 1.0)
            total += reward
        won += info["won"]
        assert total == (1.0 if info["won"] else 0.0)  # per-step reward, paid once
        types.add(info["task_type"])
    env.close()
    assert won == 12
    assert types == set(TASK_TYPES)


def test_expert_lets_go_of_what_it_placed_on_pick_two_tasks(alfworld_root: Path) -> None:
    """alfworld's expert tracks a placement by the verb "put", the engine's command is "move": told "move", it
    went on "holding" the first object and proposed moving it again while holding the second (not admissible ->
    "look"), then wandered. Told "put" (`tracked_command`), every proposal is admissible and it wins with two moves."""
    from agentrl.envs.alfworld.engine import start_game
    from agentrl.envs.alfworld.expert import HandCodedExpert, tracked_command

    assert tracked_command("move alarmclock 1 to desk 1") == "put alarmclock 1 in/on desk 1"
    assert tracked_command("take alarmclock 1 from desk 1") == "take alarmclock 1 from desk 1"
    games = sorted((alfworld_root / "json_2.1.1" / "train").glob("pick_two*/*/game.tw-pddl"))
    assert len(games) == 2
    for game in games:
        engine = start_game(str(game), write_cache=False)
        state = engine.reset()
        expert = HandCodedExpert(str(game))
        action, actions = expert.start(state), []
        for _ in range(50):
            state, _, _ = engine.step(action)
            actions.append(action)
            if state["won"]:
                break
            action = expert.next_action(state, action)
        assert state["won"] and expert.rejected == 0, (game.parent.name, actions)
        assert sum(a.startswith("move ") for a in actions) == 2 and "look" not in actions[1:], actions


def test_generated_layout_matches_alfworld(alfworld_root: Path) -> None:
    """Real dataset layout and file contents that AlfredTWEnv and the expert read."""
    trials = sorted((alfworld_root / "json_2.1.1" / "train").glob("*/*"))
    assert len(trials) == 12
    with_closed = 0
    for trial in trials:
        assert {p.name for p in trial.iterdir()} == {"traj_data.json", "initial_state.pddl", "game.tw-pddl"}
        traj = json.loads((trial / "traj_data.json").read_text())
        game = json.loads((trial / "game.tw-pddl").read_text())
        assert set(game) >= {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
        assert game["solvable"] is True and "UNKNOWN GOAL" not in game["grammar"]
        assert game["pddl_problem"] == (trial / "initial_state.pddl").read_text()
        assert traj["task_type"] in TASK_TYPES and traj["turk_annotations"]["anns"][0]["task_desc"]
        assert set(traj["pddl_params"]) >= {"object_target", "parent_target", "toggle_target", "mrecep_target"}
        assert trial.parent.name.startswith(traj["task_type"] + "-")
        problem = game["pddl_problem"]
        with_closed += "(openable " in problem and "(opened " not in problem  # closed receptacles
        # distractors and several instances of one type: more objects than classes
        n_objects = problem.count(" - object")
        n_classes = problem.count(" - otype")
        assert n_objects > n_classes >= 3
    assert with_closed >= 6


def test_alfredtwenv_loads_generated_data(alfworld_root: Path) -> None:
    """alfworld's own AlfredTWEnv finds and plays the generated tasks (same data, no conversion)."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

    config = {
        "dataset": {"data_path": str(alfworld_root / "json_2.1.1" / "train"), "num_train_games": -1},
        "logic": {"domain": ALFRED_PDDL_PATH, "grammar": ALFRED_TWL2_PATH},
        "env": {"task_types": [1, 2, 3, 4, 5, 6], "goal_desc_human_anns_prob": 0, "domain_randomization": False,
                "expert_type": "handcoded"},
        "general": {"training_method": "dagger"},
        "dagger": {"training": {"max_nb_steps_per_episode": 50}},
    }
    tw = AlfredTWEnv(config, train_eval="train")
    assert tw.num_games == 12


def test_garbage_actions_are_harmless(alfworld_root: Path) -> None:
    env = gym.make("agentrl/ALFWorld-v0", data=alfworld_root, split="train")
    env.reset(seed=0)
    for action in ["\x00\x07\x1b[2J", "\\quit\\", "x" * 10_000, "", "   ", "fly to the moon", "go to", 12345]:
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs == "Nothing happens." and reward == 0.0 and not terminated and not info["won"]
    obs, *_ = env.step("  GO   TO\tcountertop 1 ") if "go to countertop 1" in info["admissible_actions"] else (
        "You arrive", None)
    assert obs.startswith("You arrive")


def test_reset_seed_and_task_id_are_deterministic(alfworld_root: Path) -> None:
    env = gym.make("agentrl/ALFWorld-v0", data=alfworld_root, split="train")
    a = env.reset(seed=7)
    b = env.reset(seed=7)
    assert a[0] == b[0] and a[1]["task_id"] == b[1]["task_id"]
    tid = env.unwrapped.task_ids[3]
    obs, info = env.reset(options={"task_id": tid})
    assert info["task_id"] == tid
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "nope"})


def test_time_limit_truncates(alfworld_root: Path) -> None:
    env = gym.make("agentrl/ALFWorld-v0", data=alfworld_root, split="train", max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step("look")[3] for _ in range(3)]
    assert flags == [False, False, True]
    assert gym.spec("agentrl/ALFWorld-v0").max_episode_steps == agentrl.envs.SPECS["alfworld"].max_steps == 40


def test_engine_matches_textworld(alfworld_root: Path) -> None:
    """The cached engine gives the same text, commands and facts as TextWorld's PddlEnv, step by step."""
    train = alfworld_root / "json_2.1.1" / "train"
    # a heat task's expert path covers go to/open/close/take/heat/move; then random actions
    _compare_engines(sorted(train.glob("pick_heat*/*/game.tw-pddl"))[0])


def _compare_engines(game: Path) -> None:
    from agentrl.envs.alfworld.engine import start_game

    walkthrough = json.loads(game.read_text())["walkthrough"]
    traces = []
    for cached in (False, True):
        env = start_game(str(game), cached=cached)
        rng = random.Random(0)
        state = env.reset()
        trace = [(state["feedback"], state["admissible_commands"], sorted(map(str, state["facts"])))]
        for i in range(len(walkthrough) + 4):
            action = walkthrough[i] if i < len(walkthrough) else rng.choice(state["admissible_commands"])
            state, score, done = env.step(action)
            trace.append((state["feedback"], state["admissible_commands"], sorted(map(str, state["facts"])), score))
        traces.append(trace)
        env.close()
    assert traces[0] == traces[1]


_PLAY = """
import json, sys
from agentrl.envs.alfworld import engine
game, cache, actions = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
env = engine.start_game(game, cache_dir=cache)
state = env.reset()
trace = [state["feedback"]]
for action in actions:
    state, _, _ = env.step(action)
    trace.append(state["feedback"])
print(json.dumps([trace, state["won"], len(engine._GAMES)]))
"""


def test_disk_cache_round_trip(alfworld_root: Path, tmp_path: Path) -> None:
    """A game translated in one process is loaded from the disk cache by another and plays identically.

    (Two processes on purpose: textworld caches string hashes inside its objects, which differ between
    processes; a cache that pickled those objects passed a same-process test and broke in a new one.)
    """
    import subprocess
    import sys

    game = sorted((alfworld_root / "json_2.1.1" / "train").glob("pick_two*/*/game.tw-pddl"))[0]
    actions = json.dumps(json.loads(game.read_text())["walkthrough"])
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _PLAY, str(game), str(tmp_path), actions],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        assert len(list(tmp_path.glob("*.json.z"))) == 1
    assert runs[0] == runs[1] and runs[0][1] is True
    next(tmp_path.glob("*.json.z")).write_bytes(b"garbage")  # a corrupt entry is a miss, not a crash
    from agentrl.envs.alfworld import engine

    engine._GAMES.clear()
    assert engine.start_game(str(game), cache_dir=tmp_path).reset()["feedback"] == runs[0][0][0]


def test_generator_is_deterministic(tmp_path: Path) -> None:
    """Same seed -> byte-identical files, also with several worker processes; another seed -> other tasks."""
    from agentrl.envs.alfworld.generator import generate

    generate(tmp_path / "a", "valid_seen", 2, seed=3, room_size="small", progress=False)
    generate(tmp_path / "b", "valid_seen", 2, seed=3, room_size="small", progress=False, workers=2)
    generate(tmp_path / "c", "valid_seen", 2, seed=4, room_size="small", progress=False)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


TWO_CHEAP_TYPES = ("pick_and_place_simple", "look_at_obj_in_light")  # small valid_seen rooms host both


def _spy_on_draws(monkeypatch) -> list[int]:
    """The indices ``generate`` draws (calls of ``generate_one``) from now on, in order (workers=1: in process)."""
    from agentrl.envs.alfworld import generator

    drawn: list[int] = []
    real = generator.generate_one

    def spy(root, split, seed, index, *args):
        drawn.append(index)
        return real(root, split, seed, index, *args)

    monkeypatch.setattr(generator, "generate_one", spy)
    return drawn


def _as_fresh(tasks, root: Path) -> list[tuple]:
    return [(str(t.path.relative_to(root)), t.task_type, t.scene, t.expert_steps) for t in tasks]


def test_generator_resumes_where_a_run_stopped(tmp_path: Path, monkeypatch, capsys) -> None:
    """n=2, then n=3 on the same root draws only task 2; files and tasks equal a fresh n=3 run's."""
    from agentrl.cli import main
    from agentrl.envs.alfworld.generator import generate, tasks_digest

    small = {"seed": 3, "room_size": "small", "progress": False, "task_types": TWO_CHEAP_TYPES}
    fresh = generate(tmp_path / "fresh", "valid_seen", 3, **small)
    generate(tmp_path / "run", "valid_seen", 2, **small)
    drawn = _spy_on_draws(monkeypatch)
    resumed = generate(tmp_path / "run", "valid_seen", 3, **small)
    assert drawn == [2]
    assert _as_fresh(resumed, tmp_path / "run") == _as_fresh(fresh, tmp_path / "fresh")
    assert [t.reused for t in resumed] == [True, True, False]
    assert tasks_digest(tmp_path / "run") == tasks_digest(tmp_path / "fresh")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["json_2.1.1"]  # no staging left behind
    assert main(["gen", "alfworld", "--out", str(tmp_path / "run"), "--split", "valid_seen", "--n", "3", "--seed",
                 "3", "--room-size", "small", "--task-types", ",".join(TWO_CHEAP_TYPES)]) == 0
    assert drawn == [2] and "3 of them already there" in capsys.readouterr().out


def test_generator_redraws_stale_or_incomplete_trials(tmp_path: Path, monkeypatch) -> None:
    """Another generator_version, a missing file, a stale copy in another task folder and a killed run's staged
    copy are all redrawn or removed; the intact task is kept; the files end up as a fresh run's."""
    from agentrl.envs.alfworld import generator

    small = {"seed": 3, "room_size": "small", "progress": False, "task_types": TWO_CHEAP_TYPES}
    root = tmp_path / "run"
    tasks = generator.generate(root, "valid_seen", 3, **small)
    digest = generator.tasks_digest(root)
    traj_file = tasks[0].path / "traj_data.json"
    traj = json.loads(traj_file.read_text())
    traj["agentrl"]["generator_version"] = generator.GENERATOR_VERSION - 1
    traj_file.write_text(json.dumps(traj))
    stray = tasks[0].path.parent.with_name("pick_and_place_simple-Apple-None-Fridge-1") / tasks[0].path.name
    shutil.copytree(tasks[0].path, stray)
    (tasks[1].path / "game.tw-pddl").unlink()
    staged = root / ".agentrl-staging" / f"valid_seen-{tasks[2].path.name}"  # killed mid-copy
    staged.mkdir(parents=True)
    (staged / "traj_data.json").write_text("{")
    drawn = _spy_on_draws(monkeypatch)
    again = generator.generate(root, "valid_seen", 3, **small)
    assert drawn == [0, 1]
    assert [t.reused for t in again] == [False, False, True]
    assert not stray.parent.exists() and not staged.parent.exists()
    assert generator.tasks_digest(root) == digest
    generator.generate(root, "valid_seen", 3, resume=False, **small)
    assert drawn == [0, 1, 0, 1, 2] and generator.tasks_digest(root) == digest


def test_valid_unseen_uses_unseen_rooms(tmp_path: Path) -> None:
    from agentrl.envs.alfworld.generator import generate
    from agentrl.envs.alfworld.rooms import split_scenes

    seen = set(split_scenes("train")) | set(split_scenes("valid_seen"))
    unseen = set(split_scenes("valid_unseen"))
    assert unseen and not seen & unseen
    tasks = generate(tmp_path, "valid_unseen", 1, seed=0, room_size="small", progress=False)
    assert tasks[0].scene in unseen


def test_find_tasks_applies_alfworld_filters(alfworld_root: Path, tmp_path: Path) -> None:
    src = alfworld_root / "json_2.1.1" / "train"
    dst = tmp_path / "json_2.1.1" / "train"
    shutil.copytree(src, dst)
    trials = sorted(dst.glob("*/*"))
    game = json.loads((trials[0] / "game.tw-pddl").read_text())
    game["solvable"] = False
    (trials[0] / "game.tw-pddl").write_text(json.dumps(game))
    (trials[1] / "game.tw-pddl").unlink()
    shutil.move(str(trials[2].parent), str(trials[2].parent) + "-Sliced")
    tasks = find_tasks(tmp_path, "train")
    assert len(tasks) == 9
    assert len(find_tasks(tmp_path, "train", ["pick_two_obj_and_place"])) <= 2
    with pytest.raises(FileNotFoundError, match="agentrl gen alfworld"):
        find_tasks(tmp_path / "missing", "train")


def test_generator_task_types_subset(tmp_path: Path, capsys) -> None:
    """`agentrl gen --task-types` cycles through the given types only; an unknown type is named."""
    from agentrl.cli import main

    code = main(["gen", "alfworld", "--out", str(tmp_path), "--split", "valid_seen", "--n", "2", "--room-size",
                 "small", "--task-types", "look_at_obj_in_light"])
    assert code == 0
    types = {json.loads(p.read_text())["task_type"] for p in tmp_path.rglob("traj_data.json")}
    assert types == {"look_at_obj_in_light"}
    assert len(find_tasks(tmp_path, "valid_seen")) == 2
    assert main(["gen", "alfworld", "--out", str(tmp_path), "--task-types", "pick_and_place_simple,juggle"]) != 0
    assert "juggle" in capsys.readouterr().err
