"""Expert, random and ReAct policies with a scripted generator (no model)."""

from __future__ import annotations

import pytest

from agentrl.backends.base import Completion, Generator, Sampling
from agentrl.policies import Policy, make_policy
from agentrl.policies.expert import MissingExpertError
from agentrl.policies.prompts import parse_react

INFO = {
    "task_id": "t0",
    "task": "put a clean mug in coffeemachine",
    "admissible_actions": ["go to countertop 1", "go to cabinet 1", "look", "inventory"],
    "expert_action": "go to countertop 1",
    "won": False,
}


class Scripted:
    """A Generator that replays fixed replies and records what it was asked."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []
        self.released = []

    def generate(self, requests, sampling):
        self.calls.append((requests, sampling))
        return [[Completion(text=self.replies.pop(0), num_tokens=7)] for _ in requests]

    def release(self, cache_key):
        self.released.append(cache_key)


def test_all_policies_follow_the_protocol():
    assert isinstance(Scripted([]), Generator)
    for name in ("react", "expert", "random"):
        assert isinstance(make_policy(name, generator=Scripted([])), Policy)
    with pytest.raises(ValueError, match="did you mean `expert`"):
        make_policy("expret")
    with pytest.raises(ValueError, match="needs a model"):
        make_policy("react")


def test_expert_writes_react_turns_from_expert_action():
    policy = make_policy("expert")
    ctx = policy.begin(0, "You are in the middle of a room.", INFO, "alfworld")
    (decision,) = policy.act([ctx])
    assert decision.action == "go to countertop 1" and decision.valid
    thought, action, valid = parse_react(decision.raw, "alfworld")
    assert action == "go to countertop 1" and valid and "put a clean mug in coffeemachine" in thought
    policy.observe(
        ctx,
        decision,
        "You arrive at countertop 1.",
        {**INFO, "expert_action": "take mug 1 from countertop 1"},
    )
    (decision,) = policy.act([ctx])
    assert (
        decision.raw
        == "Think: I found the mug 1 on the countertop 1. I take it.\nAction: take mug 1 from countertop 1"
    )
    assert [m["role"] for m in ctx.messages] == ["system", "user", "assistant", "user"]
    with pytest.raises(MissingExpertError, match="expert_action"):
        policy.begin(0, "obs", {"task_id": "x"}, "alfworld")


def test_expert_math_steps_are_plain_lines():
    policy = make_policy("expert")
    ctx = policy.begin(0, "Question: 3 + 5?", {"expert_action": "3 + 5 = 8", "task_id": "m"}, "math")
    (decision,) = policy.act([ctx])
    assert decision.raw == "3 + 5 = 8" and decision.action == "3 + 5 = 8"


def test_random_is_uniform_over_admissible_and_seeded_per_episode():
    policy = make_policy("random", seed=1)
    picks = []
    for episode in range(400):
        ctx = policy.begin(0, "obs", INFO, "alfworld")
        ctx.memory["episode_id"] = f"e{episode}"
        picks.append(policy.act([ctx])[0].action)
    counts = {a: picks.count(a) for a in INFO["admissible_actions"]}
    assert set(picks) == set(INFO["admissible_actions"])
    assert all(60 <= c <= 140 for c in counts.values()), counts  # 100 expected each
    again = make_policy("random", seed=1)
    ctx = again.begin(5, "obs", INFO, "alfworld")
    ctx.memory["episode_id"] = "e0"
    assert again.act([ctx])[0].action == picks[0]
    with pytest.raises(ValueError, match="admissible_actions"):
        policy.act([policy.begin(0, "q", {"task_id": "m"}, "math")])


def test_react_batches_contexts_parses_and_marks_invalid():
    gen = Scripted(["Think: fridge first\nAction: open fridge 1", "I do not know"])
    policy = make_policy("react", generator=gen, sampling=Sampling(max_new_tokens=20), history=1)
    a = policy.begin(0, "Room A. Your task is to: x.", INFO, "alfworld")
    b = policy.begin(1, "Room B. Your task is to: y.", INFO, "alfworld")
    da, db = policy.act([a, b])
    assert len(gen.calls) == 1 and len(gen.calls[0][0]) == 2  # one batched call
    assert gen.calls[0][1].stop == ["\nUser:", "\nObservation:"] and gen.calls[0][1].max_new_tokens == 20
    requests = gen.calls[0][0]
    assert requests[0].cache_key != requests[1].cache_key
    assert (
        requests[0].messages[0]["role"] == "system"
        and "move {object} to" in requests[0].messages[0]["content"]
    )
    assert (da.action, da.thought, da.valid, da.new_tokens) == ("open fridge 1", "fridge first", True, 7)
    assert (db.action, db.valid, db.raw) == ("I do not know", False, "I do not know")
    policy.observe(a, da, "The fridge 1 is open.", INFO)
    assert a.messages[-2:] == [
        {"role": "assistant", "content": "Think: fridge first\nAction: open fridge 1"},
        {"role": "user", "content": "The fridge 1 is open."},
    ]
    policy.end(a)
    assert gen.released == [requests[0].cache_key]


def test_react_sampling_seed_moves_on_with_every_call():
    gen = Scripted(["Action: look"] * 3)
    policy = make_policy("react", generator=gen, sampling=Sampling(temperature=1.0, seed=5))
    for _ in range(3):
        policy.act([policy.begin(0, "Room. Your task is to: x.", INFO, "alfworld")])
    seeds = [sampling.seed for _, sampling in gen.calls]
    assert len(set(seeds)) == 3  # K samples of one task must not replay the same random numbers
    again = Scripted(["Action: look"] * 3)
    policy = make_policy("react", generator=again, sampling=Sampling(temperature=1.0, seed=5))
    for _ in range(3):
        policy.act([policy.begin(0, "Room. Your task is to: x.", INFO, "alfworld")])
    assert [sampling.seed for _, sampling in again.calls] == seeds


def test_react_math_adds_newline_stop():
    gen = Scripted(["3 + 5 = 8"])
    policy = make_policy("react", generator=gen, sampling=Sampling(stop=["####"]))
    ctx = policy.begin(0, "3 + 5?", {"task_id": "m"}, "math")
    (decision,) = policy.act([ctx])
    assert gen.calls[0][1].stop == ["####", "\n"] and decision.action == "3 + 5 = 8"
