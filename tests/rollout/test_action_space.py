"""--action-space admissible: the ReAct policy's command is one of the env's admissible ones, on a real tiny model."""

from __future__ import annotations

import json

import pytest
from fake_env import FakePool

from agentrl.backends.base import Request, Sampling
from agentrl.backends.transformers_backend import TransformersBackend
from agentrl.config import ConfigError
from agentrl.policies.action_space import partial_turn
from agentrl.policies.prompts import TURN_STOPS
from agentrl.policies.react import ReActPolicy
from agentrl.rollout import RolloutConfig, rollout

INFO = {"task_id": "t0", "task": "reach room 1", "admissible_actions": ["open door", "go to room 1", "look"]}
OBS = "You are in a hall with a closed door. Your task is to: reach room 1."


def test_with_thoughts_the_thought_is_free_and_the_command_is_chosen(tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    policy = ReActPolicy(backend, Sampling(max_new_tokens=12), action_space="admissible", example=False)
    ctx = policy.begin(0, OBS, INFO, "alfworld")
    (decision,) = policy.act([ctx])
    # the thought is what free greedy decoding writes up to "Action:" (or the token cap) ...
    free = TransformersBackend(model, tokenizer, carry_cache=False)
    stops = [*TURN_STOPS, "Action:"]
    ((thought,),) = free.generate([Request(messages=ctx.messages)], Sampling(max_new_tokens=12, stop=stops))
    partial = partial_turn(thought.text)
    assert decision.raw == partial + decision.action and partial.endswith("Action: ")
    # ... and the command is the best admissible continuation of that partial turn
    continued = [*ctx.messages, {"role": "assistant", "content": partial}]
    ((best, *_),) = free.generate([Request(messages=continued, choices=INFO["admissible_actions"])], Sampling())
    assert decision.action == best.text and decision.valid and decision.logprob == pytest.approx(best.logprob)
    assert decision.new_tokens == thought.num_tokens + best.num_tokens
    assert backend.stats.calls == 2  # one free call for the thought, one constrained call for the command


def test_thought_free_turns_choose_the_command_at_once(tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    policy = ReActPolicy(backend, Sampling(), action_space="admissible", thoughts=False, example=False)
    ctx = policy.begin(0, OBS, INFO, "alfworld")
    (decision,) = policy.act([ctx])
    assert decision.raw == f"Action: {decision.action}" and decision.action in INFO["admissible_actions"]
    assert decision.thought == "" and backend.stats.calls == 1
    top = policy.sample([ctx], 5)[0]  # top-5 of 3 distinct commands: all 3, best first, no sampling
    assert sorted(d.action for d in top) == sorted(INFO["admissible_actions"]) and top[0].action == decision.action
    assert [d.logprob / d.logprob_tokens for d in top] == sorted((d.logprob / d.logprob_tokens for d in top),
                                                                reverse=True)  # fmt: skip


def test_an_env_without_admissible_commands_is_a_clear_error(tiny_model):
    model, tokenizer = tiny_model
    policy = ReActPolicy(TransformersBackend(model, tokenizer), action_space="admissible")
    with pytest.raises(LookupError, match="lists no info\\['admissible_actions'\\].*--action-space free"):
        policy.begin(0, "Question: 1 + 1?", {"task_id": "m0", "admissible_actions": []}, "math")
    with pytest.raises(ValueError, match="action_space must be one of free, admissible"):
        ReActPolicy(TransformersBackend(model, tokenizer), action_space="listed")


def _cfg(tmp_path, **kw) -> RolloutConfig:
    base = dict(env="alfworld", data=str(tmp_path), out=str(tmp_path / "out.jsonl"), policy="react", model="tiny",
                progress=False)  # fmt: skip
    return RolloutConfig(**{**base, **kw})


def test_rollout_with_admissible_actions_only_sends_admissible_commands(tmp_path, tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    cfg = _cfg(tmp_path, episodes=2, num_envs=2, max_steps=3, max_new_tokens=6, action_space="admissible")
    rollout(cfg, pool=FakePool(num_tasks=2), generator=backend)
    rows = [json.loads(line) for line in open(cfg.out)]
    admissible = ["open door", *[f"go to room {r}" for r in range(4)], "look"]
    assert rows and all(s["action"] in admissible and s["valid"] for r in rows for s in r["steps"])
    assert all(r["meta"]["action_space"] == "admissible" and r["meta"]["choice_score"] == "mean" for r in rows)
    assert backend._cache == {}


def test_config_refuses_admissible_math_and_unknown_values(tmp_path):
    with pytest.raises(ConfigError, match="math lists no admissible commands"):
        _cfg(tmp_path, env="math", action_space="admissible")
    with pytest.raises(ConfigError, match="`action_space` must be one of free, admissible"):
        _cfg(tmp_path, action_space="list")
    with pytest.raises(ConfigError, match="`choice_score` must be one of mean, sum"):
        _cfg(tmp_path, choice_score="max")
    assert _cfg(tmp_path).actions == "free"


def test_list_admissible_writes_the_commands_into_every_observation_the_policy_sees(tmp_path):
    from agentrl.policies.action_space import with_admissible_list

    assert with_admissible_list("You see a door. ", {"admissible_actions": ["open door", "look"]}) == (
        "You see a door.\nAdmissible commands: open door, look."
    )
    assert with_admissible_list("Question: 1 + 1?", {"admissible_actions": []}) == "Question: 1 + 1?"
    cfg = _cfg(tmp_path, policy="expert", episodes=1, max_steps=3, list_admissible=True)
    rollout(cfg, pool=FakePool(num_tasks=1))
    (row,) = [json.loads(line) for line in open(cfg.out)]
    users = [m["content"] for m in row["messages"] if m["role"] == "user"]
    listing = "Admissible commands: open door, go to room 0, go to room 1, go to room 2, go to room 3, look."
    assert len(users) == 3 and all(u.endswith(listing) for u in users)
    assert row["steps"][0]["observation"].endswith(listing)  # the step records what the agent saw
    with pytest.raises(ConfigError, match="math lists no admissible commands to show"):
        _cfg(tmp_path, env="math", list_admissible=True)


def test_anti_loop_masks_a_command_that_changed_nothing_for_the_window(tmp_path, tiny_model):
    model, tokenizer = tiny_model
    cfg = _cfg(tmp_path, episodes=2, num_envs=2, max_steps=8, action_space="admissible", thoughts="off",
               anti_loop=2)  # fmt: skip
    rollout(cfg, pool=FakePool(num_tasks=2), generator=TransformersBackend(model, tokenizer))
    masked_steps = 0
    for row in [json.loads(line) for line in open(cfg.out)]:
        steps = row["steps"]
        answers = [s["observation"] for s in steps[1:]]
        for i, (step, after) in enumerate(zip(steps, answers, strict=False)):
            if after in ("Nothing happens.", step["observation"]):  # no change: masked in the next 2 steps
                for later in steps[i + 1 : i + 3]:
                    assert step["action"] in later["masked"] and later["action"] != step["action"]
                    masked_steps += 1
        for i, step in enumerate(steps):  # and nothing is masked that did not just fail
            for command in step["masked"] or []:
                assert any(s["action"] == command and a in ("Nothing happens.", s["observation"])
                           for s, a in zip(steps[max(0, i - 2) : i], answers[max(0, i - 2) : i], strict=True))  # fmt: skip
    assert masked_steps > 0
    with pytest.raises(ConfigError, match="--anti-loop masks admissible commands"):
        _cfg(tmp_path, anti_loop=2)


def test_anti_loop_window_and_the_all_masked_fallback():
    from agentrl.policies.action_space import allowed_commands, note_outcome
    from agentrl.policies.base import Context

    ctx = Context(slot=0, messages=[], observation="hall", info={"admissible_actions": ["a", "b"]}, env_kind="alfworld")
    note_outcome(ctx, "a", "hall", "Nothing happens.")  # turn 1: a changed nothing
    assert allowed_commands(ctx, 2) == (["b"], ["a"]) and allowed_commands(ctx, 0) == (["a", "b"], [])
    note_outcome(ctx, "b", "hall", "hall")  # turn 2: b repeated the observation
    assert allowed_commands(ctx, 2) == (["a", "b"], [])  # everything masked: nothing is
    note_outcome(ctx, "c", "hall", "You open it.")  # turn 3: a's mask (turn 1) has expired for window 2
    assert allowed_commands(ctx, 2) == (["a"], ["b"])
