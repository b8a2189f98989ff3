"""The engine's grammar caching (envs/alfworld/grammar.py): same logic as TextWorld's parse, parsed once per process,
and generated files unchanged. Uses its own two generated tasks (a few seconds), not the session's twelve."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("alfworld")

from agentrl.envs.alfworld import generator, grammar  # noqa: E402
from agentrl.envs.alfworld.engine import start_game  # noqa: E402
from agentrl.envs.alfworld.pddl import alfred_data_files  # noqa: E402

pytestmark = pytest.mark.alfworld

# sha256 of the files `generate(root, "train", 2, seed=0)` wrote BEFORE the grammar caching (main at aa3ba8d, with
# alfworld 0.4.2 / textworld 1.7.0 as pinned in pyproject.toml); recompute it only if those pins change.
PINNED_TRAIN_2_SEED_0 = "9b3b361648b70827a1c280b65bab81a426fdedd90367f9974dc21bc9feb3015c"


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen-two")
    generator.generate(root, "train", 2, seed=0, progress=False)
    return root


def _games(root: Path) -> list[Path]:
    return sorted(root.rglob("game.tw-pddl"))


def _clear() -> None:
    for cache in (grammar._LOGICS, grammar._DOCUMENTS, grammar._RULES, grammar._QUERIES, grammar._PARSED):
        cache.clear()


def _as_data(logic) -> tuple:
    """Everything a GameLogic holds, as comparable plain data (rules through their reprs, which show every symbol)."""
    actions = {name: vars(action) for name, action in logic.actions.items()}
    rules = {name: [(repr(r), type(r.rhs).__name__) for r in rules] for name, rules in logic.grammar._rules.items()}
    return logic.domain, actions, rules, sorted(logic.types._types)


def test_generated_files_match_the_pre_cache_generator(two_tasks: Path) -> None:
    """Byte-identical to what the generator wrote before the grammar caching (pinned digest, same seed)."""
    assert generator.tasks_digest(two_tasks) == PINNED_TRAIN_2_SEED_0


def test_generated_files_match_textworlds_own_engine(tmp_path: Path, two_tasks: Path, monkeypatch) -> None:
    """Verifying the candidates through TextWorld's uncached PddlEnv writes the very same files."""
    monkeypatch.setattr(generator, "_VERIFY_ENGINE", None)
    monkeypatch.setattr(generator, "start_game", functools.partial(start_game, cached=False))
    generator.generate(tmp_path, "train", 2, seed=0, progress=False)
    assert generator.tasks_digest(tmp_path) == generator.tasks_digest(two_tasks)


def test_game_logic_equals_textworlds_parse(two_tasks: Path) -> None:
    from textworld.envs.pddl.logic import GameLogic

    _clear()
    for game in _games(two_tasks):
        data = json.loads(game.read_text())
        ours = grammar.game_logic(data["pddl_domain"], data["grammar"])
        theirs = GameLogic(domain=data["pddl_domain"], grammar=data["grammar"])
        assert _as_data(ours) == _as_data(theirs)
        assert "Your task is to: " + data["grammar"].split("Your task is to: ")[1].split('"')[0] in repr(
            ours.grammar._rules["task"])


def test_a_new_task_reuses_the_parsed_document(two_tasks: Path, monkeypatch) -> None:
    """Two tasks (different task lines) through agentrl/ALFWorld-v0's reset: the grammar document is parsed once and
    the second task parses only its task line; before, each new task parsed the whole grammar again."""
    from textworld.envs.pddl import logic as pddl_logic

    from agentrl.envs.alfworld.env import ALFWorldEnv

    texts = [json.loads(g.read_text())["grammar"] for g in _games(two_tasks)]
    assert texts[0] != texts[1]
    calls = []
    parse = pddl_logic._PARSER.parse
    monkeypatch.setattr(pddl_logic._PARSER, "parse", lambda *a, **k: calls.append(1) or parse(*a, **k))
    _clear()
    env = ALFWorldEnv(two_tasks, "train")
    first = env.reset(options={"task_id": env.task_ids[0]})[0]
    rules = len(grammar._RULES)
    second = env.reset(options={"task_id": env.task_ids[1]})[0]
    assert len(calls) == 1 and len(grammar._DOCUMENTS) == 1 and len(grammar._LOGICS) == 2
    assert len(grammar._RULES) == rules + 1  # the second task's "Your task is to: ..." line
    assert first != second and all("Your task is to: " in f for f in (first, second))
    env.close()


@pytest.mark.parametrize("edit", ["no task line", "two task lines", "task line in a comment"])
def test_grammars_the_skeleton_does_not_fit_are_parsed_whole(edit: str, monkeypatch) -> None:
    """Without exactly one task line inside a string token, the real text is parsed, still equal to TextWorld's."""
    from textworld.envs.pddl import logic as pddl_logic

    domain, text = alfred_data_files()
    line = "Your task is to: UNKNOWN GOAL."
    text = {"no task line": text.replace(line, "Your goal: clean a mug."),
            "two task lines": text.replace('"rhs": "TODO"', '"rhs": "Your task is to: nothing."'),
            "task line in a comment": '# Your task is to: x"\n' + text.replace(line, "Your goal: clean a mug.")}[edit]
    calls = []
    parse = pddl_logic._PARSER.parse
    monkeypatch.setattr(pddl_logic._PARSER, "parse", lambda t, **k: calls.append(t) or parse(t, **k))
    _clear()
    assert (grammar.split_task(text) is None) == (edit != "task line in a comment")
    ours = grammar.game_logic(domain, text)
    assert calls[-1] == text  # the last document parsed is the real text
    assert _as_data(ours) == _as_data(pddl_logic.GameLogic(domain=domain, grammar=text))


def test_reset_after_steps_restarts_the_game(two_tasks: Path) -> None:
    """The first reset reuses the state load built; later resets rebuild it (same intro, facts and commands)."""
    game = _games(two_tasks)[0]
    env = start_game(str(game))
    first = env.reset()
    before = (first["feedback"], first["admissible_commands"], sorted(map(str, first["facts"])))
    for action in json.loads(game.read_text())["walkthrough"][:3]:
        env.step(action)
    again = env.reset()
    assert (again["feedback"], again["admissible_commands"], sorted(map(str, again["facts"]))) == before
    env.close()


def test_derived_text_matches_textworld(two_tasks: Path) -> None:
    """Intro, feedback and commands derived by grammar.derive equal TextWorld's PddlEnv along the walkthrough."""
    import random

    for game in _games(two_tasks):
        walkthrough = json.loads(game.read_text())["walkthrough"]
        traces = []
        for cached in (False, True):
            env, rng = start_game(str(game), cached=cached), random.Random(0)
            state = env.reset()
            trace = [(state["feedback"], state["admissible_commands"])]
            for i in range(len(walkthrough) + 3):
                action = walkthrough[i] if i < len(walkthrough) else rng.choice(state["admissible_commands"])
                state, _, _ = env.step(action)
                trace.append((state["feedback"], state["admissible_commands"]))
            traces.append(trace)
            env.close()
        assert traces[0] == traces[1]


def test_generator_puts_only_kept_tasks_in_the_disk_cache(tmp_path: Path, monkeypatch) -> None:
    """Rejected candidates (most pick_two ones) stay out of the engine's disk cache; the kept task is in it."""
    from collections import OrderedDict

    from agentrl.envs.alfworld import engine

    cache = tmp_path / "cache"
    monkeypatch.setenv("AGENTRL_ALFWORLD_CACHE", str(cache))
    monkeypatch.setattr(engine, "_GAMES", OrderedDict())  # nothing translated yet in this process
    monkeypatch.setattr(generator, "_VERIFY_ENGINE", None)
    play, calls = generator.play_expert, []

    def reject_first(gamefile: str, max_steps: int = 50):
        calls.append(gamefile)
        actions = play(gamefile, max_steps)
        return None if len(calls) == 1 else actions

    monkeypatch.setattr(generator, "play_expert", reject_first)
    (task,) = generator.generate(tmp_path / "data", "train", 1, seed=0, progress=False)
    game = json.loads((task.path / "game.tw-pddl").read_text())
    key = hashlib.sha256("\0".join((game["pddl_domain"], game["pddl_problem"])).encode()).hexdigest()
    assert len(calls) == 2 and [p.name for p in cache.iterdir()] == [f"{key}.json.z"]
