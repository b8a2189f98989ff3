"""Object-name augmentation (agentrl/augment.py, `agentrl augment`): consistent renaming within an episode."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from agentrl.augment import (
    AugmentConfig,
    Names,
    augment,
    draw_renames,
    episode_names,
    rename_episode,
    vocabulary,
)
from agentrl.cli import main
from agentrl.trajectory import TrajectoryWriter, read_episodes
from agentrl.types import Candidate, Episode, Step

SYSTEM = "Commands: take mug 2 from cabinet 3; clean pan 1 with sinkbasin 1."  # never renamed
OPENING = ("-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, "
           "you see a cabinet 1, a countertop 1, and a fridge 1.\n\nYour task is to: put a clean pan in fridge.")
SEEN = ("You arrive at countertop 1. On the countertop 1, you see a pan 2, a pan 1, a pancake 1, a credit card 1, "
        "and a apple 3.\nAdmissible commands: take pan 1 from countertop 1, take credit card 1 from countertop 1.")
TAKEN = "You pick up the pan 1 from the countertop 1."
THOUGHT = "Pan 1 is here; a pant or a pancake is not a pan, and I saw no vase."


def alfworld_episode(task: str = "pick_clean_then_place_in_recep-Pan-None-Fridge-1/trial_0") -> Episode:
    """A two-step ALFWorld episode touching every renamed field: chat, steps, candidates, label, masked."""
    steps = [
        Step(observation=OPENING, action="go to countertop 1", thought="I need a pan.",
             candidates=[Candidate(action="go to countertop 1", value=0.5, raw="Think: a pan.\nAction: go to "
                                   "countertop 1", thought="a pan.")], masked=["take apple 3 from countertop 1"]),
        Step(observation=SEEN, action="take pan 1 from countertop 1", thought=THOUGHT,
             label="take pan 2 from countertop 1", reward=1.0),
    ]  # fmt: skip
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": OPENING},
        {"role": "assistant", "content": "Think: I need a pan.\nAction: go to countertop 1"},
        {"role": "user", "content": SEEN},
        {"role": "assistant", "content": f"Think: {THOUGHT}\nAction: take pan 1 from countertop 1"},
        {"role": "user", "content": TAKEN},
    ]
    return Episode(episode_id=f"alfworld/train/{task}/s0", task_id=task, env_id="agentrl/ALFWorld-v0",
                   split="train", task_type="pick_clean_then_place_in_recep", policy="expert", success=True,
                   reward=1.0, steps=steps, messages=messages, meta={"agent": {"thoughts": True}})  # fmt: skip


def write(path: Path, episodes: list[Episode]) -> Path:
    with TrajectoryWriter(path) as writer:
        for episode in episodes:
            writer.write(episode)
    return path


def all_text(episode: Episode) -> str:
    """Every renamed text of an episode, one string (system message excluded)."""
    parts = [m["content"] for m in episode.messages if m["role"] != "system"]
    for s in episode.steps:
        parts += [s.observation, s.thought, s.action, s.label or "", *(s.masked or [])]
        parts += [t for c in s.candidates or [] for t in (c.action, c.raw, c.thought)]
    return "\n".join(parts)


def count_word(text: str, name: str) -> int:
    return len(re.findall(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text, re.IGNORECASE))


def test_types_come_from_the_env_text_and_the_room_listing() -> None:
    """Receptacles are the opening listing's types; objects every other numbered name; `known` names may have
    several words (`credit card`, not `card`); the model's turns never add a type."""
    ep = alfworld_episode()
    ep.messages[2]["content"] += " thecke 1"  # garbage a model wrote: not a type
    assert episode_names(ep) == Names(("apple", "card", "pan", "pancake"), ("cabinet", "countertop", "fridge"))
    assert episode_names(ep, known=["credit card"]).objects == ("apple", "credit card", "pan", "pancake")
    assert vocabulary([ep, ep], known=["credit card"]) == episode_names(ep, known=["credit card"])


def test_rename_is_consistent_everywhere_with_word_boundaries_and_numbers() -> None:
    """Hand-written expectation: pan -> tomato sauce, credit card -> egg; `pancake`, `pant` and the system
    message stay; `Pan` stays capitalised; instance numbers stay."""
    ep = alfworld_episode()
    copy = rename_episode(ep, {"pan": "tomato sauce", "credit card": "egg"}, copy=1, seed=0)
    assert copy.messages[0]["content"] == SYSTEM
    assert copy.messages[1]["content"].endswith("Your task is to: put a clean tomato sauce in fridge.")
    assert copy.messages[3]["content"] == (
        "You arrive at countertop 1. On the countertop 1, you see a tomato sauce 2, a tomato sauce 1, a pancake 1, "
        "a egg 1, and a apple 3.\nAdmissible commands: take tomato sauce 1 from countertop 1, take egg 1 from "
        "countertop 1.")  # fmt: skip
    assert copy.messages[4]["content"] == ("Think: Tomato sauce 1 is here; a pant or a pancake is not a tomato "
                                           "sauce, and I saw no vase.\nAction: take tomato sauce 1 from countertop 1")
    assert copy.messages[5]["content"] == "You pick up the tomato sauce 1 from the countertop 1."
    first, second = copy.steps
    assert first.observation == copy.messages[1]["content"] and second.observation == copy.messages[3]["content"]
    assert (second.action, second.label) == ("take tomato sauce 1 from countertop 1",
                                             "take tomato sauce 2 from countertop 1")
    assert first.thought == "I need a tomato sauce." and first.masked == ["take apple 3 from countertop 1"]
    assert (first.candidates[0].raw, first.candidates[0].thought) == (
        "Think: a tomato sauce.\nAction: go to countertop 1", "a tomato sauce.")
    assert ep.messages[4]["content"].startswith("Think: Pan 1")  # the source is not changed
    assert (copy.task_id, copy.success, copy.reward, copy.policy) == (ep.task_id, True, 1.0, "expert")


def test_draw_is_distinct_avoids_present_names_and_renames_a_subset_when_short() -> None:
    rng = random.Random(0)
    for _ in range(50):
        renames = draw_renames(["apple", "pan", "mug"], ["egg", "mug", "vase", "cup", "bowl"], {"mug", "vase"}, rng)
        assert sorted(renames) == ["apple", "mug", "pan"] and set(renames.values()) == {"egg", "cup", "bowl"}
    short = draw_renames(["apple", "pan", "mug"], ["egg", "mug"], {"mug"}, rng)
    assert len(short) == 1 and list(short.values()) == ["egg"]
    assert len({next(iter(draw_renames(["apple", "pan", "mug"], ["egg"], set(), rng))) for _ in range(30)}) > 1
    for _ in range(30):  # the task's types are renamed first
        assert draw_renames(["apple", "pan", "mug"], ["egg", "cup"], set(), rng, first=["pan"]).keys() >= {"pan"}
    assert draw_renames(["apple"], ["apple"], {"apple"}, rng) == {}


def test_a_short_pool_renames_the_task_object_first(tmp_path: Path) -> None:
    """Two free names for four object types: the task's `pan` is renamed in every copy."""
    from agentrl.augment import task_names

    ep = alfworld_episode()
    assert task_names(ep, episode_names(ep)) == {"pan", "fridge"}
    data = write(tmp_path / "d.jsonl", [ep])
    (tmp_path / "v.txt").write_text("egg\ncup\n")
    counts = augment(AugmentConfig(data=str(data), out=str(tmp_path / "o.jsonl"), copies=10, vocab=str(tmp_path / "v.txt")))
    assert counts["partial_copies"] == counts["copies"] == 10
    assert all("pan" in e.meta["augment"]["renames"] for e in read_episodes(tmp_path / "o.jsonl"))


def test_augment_file_copies_meta_and_no_collisions(tmp_path: Path) -> None:
    """20 copies over a vocabulary: every copy renames every object type consistently (old names gone, new ones
    as often as the old), to distinct names never present in the episode (`vase` is only in a thought)."""
    data = write(tmp_path / "demos.jsonl", [alfworld_episode()])
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("# objects\ncredit card\ntomato sauce\negg\nvase\nmug\nbowl\npan\nApple\n\nknife  # sharp\n")
    counts = augment(AugmentConfig(data=str(data), out=str(tmp_path / "aug.jsonl"), copies=20, seed=3,
                                   vocab=str(vocab), keep_original=True))  # fmt: skip
    assert (counts["episodes"], counts["originals"], counts["copies"], counts["skipped_copies"]) == (1, 1, 20, 0)
    assert counts["episodes_per_s"] > 0
    original, *copies = read_episodes(tmp_path / "aug.jsonl")
    assert original.to_dict() == alfworld_episode().to_dict()
    assert len({c.episode_id for c in [original, *copies]}) == 21
    source_text = all_text(original)
    for number, ep in enumerate(copies, start=1):
        meta = ep.meta["augment"]
        assert ep.episode_id == f"{original.episode_id}/aug{number}"
        assert (meta["source"], meta["copy"], meta["seed"]) == (original.episode_id, number, 3)
        assert ep.meta["agent"] == {"thoughts": True} and ep.messages[0]["content"] == SYSTEM
        renames = meta["renames"]
        assert sorted(renames) == ["apple", "credit card", "pan", "pancake"]
        targets = list(renames.values())
        assert len(set(targets)) == len(targets)
        assert not set(targets) & {"pan", "apple", "pancake", "credit card", "vase", "cabinet", "countertop"}
        text = all_text(ep)
        for old, new in renames.items():
            assert count_word(text, old) == 0
            assert count_word(text, new) == count_word(source_text, old)
        assert f"{renames['pan']} 2" in ep.steps[1].observation and f"{renames['apple']} 3" in ep.steps[0].masked[0]
    assert len({json.dumps(c.meta["augment"]["renames"]) for c in copies}) > 1


def test_same_seed_same_bytes_other_seed_other_draw_order_free(tmp_path: Path) -> None:
    episodes = [alfworld_episode(f"pick_clean_then_place_in_recep-Pan-None-Fridge-{i}/trial_0") for i in range(3)]
    episodes[1].steps[1].observation = episodes[1].steps[1].observation.replace("pancake 1", "bowl 4")
    episodes[2].steps[1].observation = episodes[2].steps[1].observation.replace("apple 3", "knife 2, a cup 1")
    episodes[2].messages[1]["content"] = episodes[2].steps[0].observation = OPENING.replace("cabinet", "drawer")
    data = write(tmp_path / "d.jsonl", episodes)
    reverse = write(tmp_path / "r.jsonl", episodes[::-1])

    def run(path: Path, out: str, seed: int) -> list[str]:
        augment(AugmentConfig(data=str(path), out=str(tmp_path / out), copies=2, seed=seed, receptacles=True))
        return (tmp_path / out).read_text().splitlines()

    first, again, other = run(data, "a.jsonl", 0), run(data, "b.jsonl", 0), run(data, "c.jsonl", 1)
    assert first == again and first != other
    assert sorted(run(reverse, "rev.jsonl", 0)) == sorted(first)  # a copy depends on its episode, not the order
    receptacles = {"cabinet", "countertop", "fridge"}
    assert any(receptacles & set(json.loads(line)["meta"]["augment"]["renames"]) for line in first)


def test_augmented_copies_load_for_sft_and_are_refused_by_reward_learners(tmp_path: Path, tiny_model_dir: Path,
                                                                          capsys) -> None:
    """`agentrl learn --algo sft` trains on the copies; OREO refuses them in one line, exit code 2."""
    from transformers import AutoTokenizer

    from agentrl.data import DataError
    from agentrl.training_data import load_tokenized

    data = write(tmp_path / "demos.jsonl", [alfworld_episode()])
    vocab = tmp_path / "v.txt"
    vocab.write_text("egg\nmug\ncup\nbowl\nknife\n")
    aug = tmp_path / "aug.jsonl"
    assert main(["augment", "--data", str(data), "--out", str(aug), "--copies", "2", "--vocab", str(vocab)]) == 0
    assert "1 episodes -> 2 renamed copies" in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    items, counts = load_tokenized([aug], tokenizer, allow_labels=True)
    assert counts["kept"] == 2 and all(item.success for item in items)
    with pytest.raises(DataError, match=r"aug.jsonl: episode 1 .*/aug1\) is a renamed copy .* only SFT learns"):
        load_tokenized([aug], tokenizer)
    common = ["--data", str(aug), "--model", str(tiny_model_dir), "--max-steps", "1", "--batch-size", "2"]
    assert main(["learn", "--algo", "sft", *common, "--out", str(tmp_path / "sft")]) == 0
    assert (tmp_path / "sft" / "policy" / "config.json").is_file()
    capsys.readouterr()
    assert main(["learn", "--algo", "oreo", *common, "--out", str(tmp_path / "oreo")]) == 2
    err = capsys.readouterr().err
    assert "renamed copy" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _math_episode() -> Episode:
    return Episode(episode_id="math/test/p/s0", task_id="p", env_id="agentrl/Math-v0", split="test",
                   task_type="math", policy="expert", steps=[Step(observation="Tom has 3 apples", action="#### 3")])


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "missing.jsonl: no such trajectory file"),
    ("damaged", "damaged.jsonl:2: invalid JSON"),
    ("math", "math.jsonl:1: episode math/test/p/s0 is from agentrl/Math-v0"),
    ("augmented", "aug.jsonl:1: episode alfworld/train/"),
    ("no vocab", "nope.txt: no such vocabulary file"),
    ("bad vocab", "bad.txt:2: 'pan-2!' is not an object name"),
    ("zero copies", "--copies must be >= 1"),
    ("same file", "--out must differ from --data"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, case: str, message: str) -> None:
    good = write(tmp_path / "good.jsonl", [alfworld_episode()])
    line = good.read_text()
    (tmp_path / "damaged.jsonl").write_text(line + "{broken\n" + line)
    write(tmp_path / "math.jsonl", [_math_episode()])
    (tmp_path / "bad.txt").write_text("egg\npan-2!\n")
    (tmp_path / "v.txt").write_text("egg\n")
    augment(AugmentConfig(data=str(good), out=str(tmp_path / "aug.jsonl"), vocab=str(tmp_path / "v.txt")))
    data = {"missing": "missing.jsonl", "damaged": "damaged.jsonl", "math": "math.jsonl",
            "augmented": "aug.jsonl"}.get(case, "good.jsonl")  # fmt: skip
    argv = ["augment", "--data", str(tmp_path / data), "--out", str(tmp_path / "out.jsonl")]
    argv += {"no vocab": ["--vocab", str(tmp_path / "nope.txt")], "bad vocab": ["--vocab", str(tmp_path / "bad.txt")],
             "zero copies": ["--copies", "0"], "same file": ["--out", str(tmp_path / data)]}.get(case, [])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_copy_with_no_free_name_is_skipped_and_counted(tmp_path: Path, capsys) -> None:
    """With the vocabulary of the file itself, one episode has no name it does not already show."""
    data = write(tmp_path / "one.jsonl", [alfworld_episode()])
    assert main(["augment", "--data", str(data), "--out", str(tmp_path / "o.jsonl"), "--copies", "2"]) == 0
    assert "2 copies not written (no free name to draw)" in capsys.readouterr().out
    assert (tmp_path / "o.jsonl").read_text() == ""


def test_recipe_sft_trains_on_the_demonstrations_and_their_copies(tmp_path: Path, monkeypatch) -> None:
    """`demonstrations: {augment_copies: 2}`: one shared stage writes originals + copies, SFT's data is that file,
    the other learners keep the demonstrations; the key is refused outside alfworld."""
    from agentrl.config import ConfigError, parse_config
    from agentrl.recipes import RecipeConfig, offline
    from agentrl.recipes.stages import Stages

    demo = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    cfg = parse_config(RecipeConfig, ["--config", str(demo), "--out", str(tmp_path / "run"),
                                      "--demonstrations.augment_copies", "2"], prog="agentrl recipe")  # fmt: skip
    assert cfg.demonstrations.augment_copies == 2
    other = alfworld_episode("pick_and_place_simple-Vase-None-Fridge-2/trial_0")
    other.messages[3]["content"] = other.steps[1].observation = SEEN.replace("apple 3", "vase 1, a egg 2")
    other.steps[0].masked = None  # no apple left in it: apple is a free name for its copies
    demos = write(tmp_path / "run" / "demonstrations.jsonl", [alfworld_episode(), other])
    stages = Stages(tmp_path / "run")
    path = offline._augmented(cfg, stages, demos)
    assert path == tmp_path / "run" / "demonstrations-aug2.jsonl" and stages.ran == ["augment demonstrations"]
    episodes = read_episodes(path)
    assert [("augment" in e.meta) for e in episodes] == [False, True, True] * 2
    assert offline._augmented(cfg, Stages(tmp_path / "run"), demos) == path  # done: skipped, same file
    seen: list[tuple[str, list[str]]] = []
    run = offline.SeedRun(cfg, 0, None, demos, path)
    run.base = "base"
    monkeypatch.setattr(run, "_learn_stage", lambda label, learned, options, model, data: seen.append((label, data)))
    run._sft()
    run._learn("OREO", 1, "sft", [])
    assert seen == [("seed 0: SFT", [str(path)]), ("seed 0: OREO", [str(demos)])]
    with pytest.raises(ConfigError, match="only alfworld demonstrations are renamed"):
        parse_config(RecipeConfig, ["--config", str(demo.parents[1] / "bench" / "math_mini" / "config.yaml"),
                                    "--demonstrations.augment_copies", "1"], prog="agentrl recipe")  # fmt: skip
