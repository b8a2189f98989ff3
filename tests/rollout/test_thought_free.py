"""Thought-free turns (``--thoughts off``): prompt, expert/random/ReAct turns, parser, learner data, replay, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_env import FakePool

from agentrl.cli import main
from agentrl.config import ConfigError
from agentrl.policies import make_policy
from agentrl.policies.prompts import format_react, initial_messages, parse_react, system_prompt
from agentrl.rollout import RolloutConfig, rollout
from agentrl.trajectory import read_episodes

ACTION_ONLY = re.compile(r"Action: [^\n]+")


def _cfg(tmp_path: Path, **kw) -> RolloutConfig:
    base = {"env": "alfworld", "data": str(tmp_path), "policy": "expert", "out": str(tmp_path / "out.jsonl"),
            "progress": False, "episodes": 3}
    return RolloutConfig(**{**base, **kw})


@pytest.mark.parametrize("kind", ["alfworld", "textworld"])
def test_thought_free_prompt_asks_for_one_action_line_and_its_example_has_no_think(kind):
    free = system_prompt(kind, example=True, thoughts=False)
    assert "Think" not in free and "exactly one line:\nAction: <one command>" in free
    turns = re.findall(r"^Assistant: (.*)$", free, re.MULTILINE)
    assert turns and all(t.startswith("Action: ") for t in turns)
    # the same prompt, one line fewer in the answer format and one Think line fewer per example turn
    full = system_prompt(kind, example=True)
    assert len(full.splitlines()) - len(free.splitlines()) == 1 + len(turns)
    assert "Think: <one short sentence" in full


def test_math_prompt_is_the_same_either_way():
    assert system_prompt("math", thoughts=False) == system_prompt("math")


def test_format_and_parse_round_trip_without_a_thought():
    raw = format_react("ignored", "take mug 1 from desk 1", "alfworld", thoughts=False)
    assert raw == "Action: take mug 1 from desk 1"
    assert parse_react(raw, "alfworld") == ("", "take mug 1 from desk 1", True)
    assert format_react("x", "#### 8", "math", thoughts=False) == "#### 8"


def test_expert_rollout_with_thoughts_off_writes_action_only_turns(tmp_path):
    cfg = _cfg(tmp_path, thoughts="off")
    rollout(cfg, pool=FakePool(num_tasks=3))
    episodes = read_episodes(cfg.out)
    assert len(episodes) == 3
    for ep in episodes:
        assert ep.success and ep.meta["agent"]["thoughts"] is False
        assistant = [m["content"] for m in ep.messages if m["role"] == "assistant"]
        assert assistant == [f"Action: {s.action}" for s in ep.steps]
        assert all(ACTION_ONLY.fullmatch(a) for a in assistant)
        assert all(s.thought == "" and s.valid for s in ep.steps)
        assert "Think" not in ep.messages[0]["content"]
    # and with thoughts on (the default) the same run writes Think lines
    on = _cfg(tmp_path, out=str(tmp_path / "on.jsonl"))
    rollout(on, pool=FakePool(num_tasks=3))
    first = read_episodes(on.out)[0]
    assert first.meta["agent"]["thoughts"] is True and first.messages[2]["content"].startswith("Think: ")
    assert first.steps[0].thought


def test_random_and_react_policies_follow_the_switch():
    class Echo:
        """A generator that answers every request with a thought-free turn."""

        def generate(self, requests, sampling):
            from agentrl.backends.base import Completion

            self.prompts = [r.messages for r in requests]
            return [[Completion(text="Action: open door", num_tokens=3)] for _ in requests]

        def release(self, key):
            pass

    info = {"task": "reach room 1", "admissible_actions": ["open door"], "task_id": "t1"}
    rnd = make_policy("random", thoughts=False)
    ctx = rnd.begin(0, "You are in a hall.", info, "alfworld")
    (decision,) = rnd.act([ctx])
    assert decision.raw == "Action: open door" and decision.thought == ""

    echo = Echo()
    react = make_policy("react", generator=echo, thoughts=False)
    ctx = react.begin(0, "You are in a hall.", info, "alfworld")
    assert ctx.messages == initial_messages("alfworld", "You are in a hall.", info, thoughts=False)
    (decision,) = react.act([ctx])
    assert (decision.action, decision.thought, decision.valid) == ("open door", "", True)
    assert "Think" not in echo.prompts[0][0]["content"]


def test_learner_data_marks_exactly_the_action_turns(tmp_path, tiny_model):
    """Every assistant turn of a thought-free episode is an action: its tokens decode to the turn's text plus
    the end-of-turn token, and nothing else in the chat is marked."""
    from agentrl.data import tokenize_episode

    _, tokenizer = tiny_model
    cfg = _cfg(tmp_path, thoughts="off", episodes=1)
    rollout(cfg, pool=FakePool(num_tasks=1))
    (ep,) = read_episodes(cfg.out)
    item = tokenize_episode(ep, tokenizer, level="step")
    assert len(item.state_positions) == ep.num_steps == len(item.after_positions)
    marked = [i for i, m in enumerate(item.action_mask) if m]
    text = tokenizer.decode([item.input_ids[i] for i in marked])
    assert text == "".join(f"Action: {s.action}<|im_end|>" for s in ep.steps)


def test_replay_of_a_thought_free_episode_shows_actions_and_no_think_row(tmp_path):
    from rich.console import Console

    from agentrl.replay import play

    cfg = _cfg(tmp_path, thoughts="off", episodes=1)
    rollout(cfg, pool=FakePool(num_tasks=1))
    (ep,) = read_episodes(cfg.out)
    console = Console(record=True, width=100, file=open("/dev/null", "w"))  # noqa: SIM115
    play(ep, console)
    text = console.export_text()
    assert "Think" not in text and "open door" in text and "SUCCESS" in text


def test_thoughts_switch_reads_on_off_from_flags_and_yaml(tmp_path, capsys):
    assert _cfg(tmp_path, thoughts="OFF").thoughts == "off"
    assert _cfg(tmp_path, thoughts=False).thoughts == "off"  # YAML `thoughts: off` arrives as False
    with pytest.raises(ConfigError, match="`thoughts` must be on or off, got 'maybe'"):
        _cfg(tmp_path, thoughts="maybe")
    assert main(["rollout", "--env", "alfworld", "--data", str(tmp_path), "--out", str(tmp_path / "x.jsonl"),
                 "--policy", "expert", "--thoughts", "maybe"]) == 2
    assert "`thoughts` must be on or off" in capsys.readouterr().err
    yaml_file = tmp_path / "eval.yaml"
    yaml_file.write_text(f"data: {tmp_path}\nthoughts: off\nout: {tmp_path / 'r.json'}\n")
    from agentrl.config import parse_config
    from agentrl.evaluate import EvalConfig, rollout_config

    cfg = parse_config(EvalConfig, ["--config", str(yaml_file)], prog="agentrl eval")
    assert cfg.thoughts == "off" and rollout_config(cfg, "x.jsonl").with_thoughts is False


def test_word_level_tiny_model_from_thought_free_demonstrations(tmp_path, capsys):
    """`agentrl model tiny --tokenizer word` on thought-free expert data: a small vocabulary, no unknown word in
    its own data, fewer tokens per episode than BPE of the same cap, and a model the ReAct policy runs."""
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.data import tokenize_episode
    from agentrl.models import load_tokenizer

    cfg = _cfg(tmp_path, thoughts="off", episodes=4)
    rollout(cfg, pool=FakePool(num_tasks=4))
    common = ["--data", cfg.out, "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--vocab-size", "400"]
    assert main(["model", "tiny", *common, "--tokenizer", "word", "--out", str(tmp_path / "word")]) == 0
    assert main(["model", "tiny", *common, "--out", str(tmp_path / "bpe")]) == 0
    word, bpe = load_tokenizer(tmp_path / "word"), load_tokenizer(tmp_path / "bpe")
    assert len(word) < 256 < len(bpe)  # the words of prompt and task, against BPE's 256 bytes + merges
    episodes = read_episodes(cfg.out)
    word_items = [tokenize_episode(ep, word) for ep in episodes]
    assert all(word.unk_token_id not in item.input_ids for item in word_items)
    n_word = sum(len(item.input_ids) for item in word_items)
    n_bpe = sum(len(tokenize_episode(ep, bpe).input_ids) for ep in episodes)
    assert n_word < n_bpe

    backend = TransformersBackend.from_pretrained(str(tmp_path / "word"))
    assert backend.model.config.vocab_size == len(word)
    react = _cfg(tmp_path, policy="react", model=str(tmp_path / "word"), thoughts="off", episodes=1, max_steps=2,
                 max_new_tokens=3, out=str(tmp_path / "react.jsonl"))
    rollout(react, pool=FakePool(num_tasks=1), generator=backend)
    (ep,) = read_episodes(react.out)
    assert ep.num_steps == 2 and "Think" not in ep.messages[0]["content"]
    capsys.readouterr()
    assert main(["model", "tiny", "--tokenizer", "chars", "--data", cfg.out, "--out", str(tmp_path / "x")]) == 2
    assert "`tokenizer` must be bpe or word, got 'chars'" in capsys.readouterr().err
