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
