"""The ReAct format: system prompts with ALFWorld >= 0.4 syntax, a forgiving parser, history windows."""

from __future__ import annotations

import re

import pytest

from agentrl.policies.prompts import format_react, initial_messages, parse_react, system_prompt, window


def test_alfworld_prompt_lists_the_0_4_verbs_and_no_0_3_put():
    text = system_prompt("alfworld", example=True)
    for verb in (
        "go to",
        "take",
        "from",
        "move",
        " to ",
        "open",
        "close",
        "clean",
        "heat",
        "cool",
        "use",
        "examine",
        "look",
        "inventory",
    ):
        assert verb in text, verb
    assert re.search(r"Action: put|^\s*put \{", text, re.MULTILINE) is None  # the 0.3 syntax fails silently
    assert "Think:" in text and "Action:" in text
    assert "Example:" in text and "Example:" not in system_prompt("alfworld", example=False)


@pytest.mark.parametrize(
    ("reply", "thought", "action"),
    [
        ("Think: I need a mug.\nAction: go to countertop 1", "I need a mug.", "go to countertop 1"),
        ("think: x\naction: take mug 1 from countertop 1.", "x", "take mug 1 from countertop 1"),
        ("**Think:** hmm\n**Action:** `open fridge 1`", "hmm", "open fridge 1"),
        ("Action: look\nObservation: something else\nAction: inventory", "", "look"),
        ("Thought: go\nAction:\n  move apple 1 to sinkbasin 1", "go", "move apple 1 to sinkbasin 1"),
        ("Think: a\n- Action: heat egg 1 with microwave 1", "a", "heat egg 1 with microwave 1"),
    ],
)
def test_parse_valid(reply, thought, action):
    assert parse_react(reply, "alfworld") == (thought, action, True)


@pytest.mark.parametrize("reply", ["I will go to the fridge", "Think: only thinking", "Action:   ", ""])
def test_missing_or_empty_action_sends_the_raw_text_and_is_invalid(reply):
    assert parse_react(reply, "alfworld") == ("", reply, False)


def test_math_takes_one_step_per_turn():
    assert parse_react("  3 + 5 = 8 apples.\nThen ...", "math") == ("", "3 + 5 = 8 apples.", True)
    assert parse_react("   ", "math")[2] is False


def test_format_round_trips_through_the_parser():
    raw = format_react("I found it.", "take mug 1 from desk 1", "alfworld")
    assert parse_react(raw, "alfworld") == ("I found it.", "take mug 1 from desk 1", True)
    assert format_react("", "#### 8", "math") == "#### 8"


def test_window_keeps_system_task_and_last_turns():
    msgs = initial_messages(
        "alfworld", "You are in a room. Your task is to: x.", {"task": "x"}, example=False
    )
    for k in range(4):
        msgs += [{"role": "assistant", "content": f"a{k}"}, {"role": "user", "content": f"o{k}"}]
    assert window(msgs, None) == msgs
    short = window(msgs, 2)
    assert short[:2] == msgs[:2] and [m["content"] for m in short[2:]] == ["a2", "o2", "a3", "o3"]
    assert window(msgs, 0) == msgs[:2]


def test_task_is_added_when_the_observation_lacks_it():
    msgs = initial_messages("textworld", "You are in a kitchen.", {"task": "eat the apple"}, example=False)
    assert msgs[1]["content"].endswith("Your task is to: eat the apple")
    assert (
        initial_messages("math", "Tom has 3 apples?", {}, example=False)[1]["content"]
        == "Question: Tom has 3 apples?"
    )
