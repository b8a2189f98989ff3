"""`learn --history N`: each assistant turn trains on the prompt a ReAct agent with `--history N` sends."""

from __future__ import annotations

import json

import pytest

from agentrl.backends.base import Completion, Sampling
from agentrl.cli import main
from agentrl.data import tokenize_episode
from agentrl.learn_config import LearnConfig, learn
from agentrl.policies import make_policy
from agentrl.training_data import load_tokenized, turn_windows
from agentrl.trajectory import TrajectoryWriter
from agentrl.types import Episode

from .helpers import episode, write_dataset

INFO = {"task_id": "t0", "task": "put a mug in fridge", "admissible_actions": ["look"], "won": False}
REPLIES = [f"Think: step {t}.\nAction: go to cabinet {t}" for t in range(4)]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


class Recording:
    """A generator that replays ``REPLIES`` and records every prompt it is sent."""

    def __init__(self):
        self.replies, self.prompts = list(REPLIES), []

    def generate(self, requests, sampling):
        self.prompts += [r.messages for r in requests]
        return [[Completion(text=self.replies.pop(0), num_tokens=3)] for _ in requests]

    def release(self, cache_key):
        pass


def _agent_episode(history: int) -> tuple[Episode, list[list[dict]]]:
    """Four turns of a ReAct agent with ``--history history``: the recorded episode and the prompts it sent."""
    gen = Recording()
    policy = make_policy("react", generator=gen, sampling=Sampling(max_new_tokens=20), history=history)
    ctx = policy.begin(0, "You are in the middle of a room. Your task is to: put a mug in fridge.", INFO, "alfworld")
    for t in range(4):
        (decision,) = policy.act([ctx])
        policy.observe(ctx, decision, f"You arrive at cabinet {t}. On the cabinet {t}, you see a mug {t}.", INFO)
    ep = Episode(
        episode_id="e0", task_id="t0", env_id="agentrl/Test-v0", split="train", task_type="pick", policy="react",
        success=True, reward=1.0, steps=[], messages=ctx.messages,
    )  # fmt: skip
    return ep, gen.prompts


@pytest.mark.parametrize("history", [0, 1, 2])
def test_windows_are_the_prompts_the_agent_sent(history):
    ep, prompts = _agent_episode(history)
    windows = turn_windows(ep, history)
    assert [w.messages[:-1] for w in windows] == prompts
    assert [w.messages[-1] for w in windows] == [{"role": "assistant", "content": r} for r in REPLIES]
    assert [w.episode_id for w in windows] == [f"e0#turn{t}" for t in range(4)]
    assert all(w.task_id == "t0" and w.reward == 1.0 for w in windows)
    assert len(windows[3].messages) == 2 + 2 * min(history, 3) + 1  # system, task, history pairs, the turn


def test_windows_tokenize_with_the_last_turn_as_the_only_action(tokenizer):
    ep, _ = _agent_episode(1)
    window = turn_windows(ep, 1)[2]  # system, task, turn 1 + its observation, turn 2
    item = tokenize_episode(window, tokenizer, last_turn_only=True)
    whole = tokenize_episode(window, tokenizer)
    assert len(item.after_positions) == 1 and item.after_positions == whole.after_positions[-1:]
    actions = [t for t, m in zip(item.input_ids, item.action_mask, strict=True) if m]
    assert tokenizer.decode(actions) == REPLIES[2] + "<|im_end|>"
    assert sum(whole.action_mask) > sum(item.action_mask)  # the history's turn is context, not an action
    assert item.input_ids == whole.input_ids


def test_load_tokenized_with_history(tokenizer, tmp_path):
    eps = [episode(0, 0, True, turns=4), episode(1, 0, False, turns=3)]
    path = tmp_path / "train.jsonl"
    with TrajectoryWriter(path) as writer:
        for ep in eps:
            writer.write(ep)
    items, counts = load_tokenized(str(path), tokenizer, history=1)
    assert counts["windows"] == 7 and counts["kept"] == 7 and counts["read"] == 2
    assert [i.episode_id for i in items[:4]] == [f"{eps[0].episode_id}#turn{t}" for t in range(4)]
    assert all(sum(1 for _ in i.after_positions) == 1 for i in items)
    marked, _ = load_tokenized(str(path), tokenizer, history=1, observations="later")
    assert [sum(i.obs_mask) > 0 for i in marked[:4]] == [False, True, True, True]  # the window's observations
    whole, plain_counts = load_tokenized(str(path), tokenizer)
    assert len(whole) == 2 and "windows" not in plain_counts
    # every action token of an episode is trained exactly once, in its own window
    assert sum(i.num_actions for i in items) == sum(w.num_actions for w in whole)
    longest = max(len(i.input_ids) for i in items)
    cut, cut_counts = load_tokenized(str(path), tokenizer, history=1, max_length=longest - 1)
    assert cut_counts["too_long"] == sum(len(i.input_ids) == longest for i in items) and len(cut) < len(items)


def test_learn_with_history_records_it_and_warns_without(tiny_model_dir, tmp_path, capsys):
    data = write_dataset(tmp_path / "train.jsonl", tasks=2)
    common = dict(data=[str(data)], model=str(tiny_model_dir), algo="sft", lr=1e-3, batch_size=4, max_steps=2)
    learn(LearnConfig(out=str(tmp_path / "h1"), history=1, **common))
    assert json.loads((tmp_path / "h1" / "policy" / "agent_config.json").read_text())["history"] == 1
    assert json.loads((tmp_path / "h1" / "learn_config.json").read_text())["history"] == 1
    assert "training items" in capsys.readouterr().out
    # episodes recorded by an agent with a window, trained on whole chats: the mismatch is reported
    windowed = tmp_path / "windowed.jsonl"
    with TrajectoryWriter(windowed) as writer:
        for t in range(2):
            ep = episode(t, 0, True)
            ep.meta["agent"] = {"history": 2}
            writer.write(ep)
    learn(LearnConfig(**{**common, "data": [str(windowed)]}, out=str(tmp_path / "whole")))
    assert json.loads((tmp_path / "whole" / "policy" / "agent_config.json").read_text())["history"] == 2
    assert "`--history 2` trains on the prompts the agent is sent" in capsys.readouterr().err


def test_history_options_are_checked(tmp_path, capsys):
    data = write_dataset(tmp_path / "train.jsonl", tasks=1)
    args = ["learn", "--data", str(data), "--out", str(tmp_path / "o")]
    assert main([*args, "--algo", "oreo", "--history", "2"]) == 2
    assert "only sft and rs train on history windows" in capsys.readouterr().err
    assert main([*args, "--algo", "sft", "--history", "-1"]) == 2
    assert "`history` must be >= 0" in capsys.readouterr().err
    assert main([*args, "--algo", "rs", "--history", "1", "--cap-positives"]) == 2
    assert "`history` with `cap_positives`" in capsys.readouterr().err
