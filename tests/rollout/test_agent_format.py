"""The agent format travels with the model: agent_config.json written by `model tiny` / `learn`, read by rollout,
eval, iterate and serve; flags override it, a mismatch warns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_env import FakePool

from agentrl import agent_format
from agentrl.agent_format import AgentFormat, AgentFormatError
from agentrl.cli import main
from agentrl.rollout import RolloutConfig, rollout
from agentrl.trajectory import read_episodes
from agentrl.types import Episode


def _cfg(tmp_path: Path, **kw) -> RolloutConfig:
    base = {"env": "alfworld", "data": str(tmp_path), "policy": "expert", "out": str(tmp_path / "out.jsonl"),
            "progress": False, "episodes": 2}
    return RolloutConfig(**{**base, **kw})


def _episode(assistant: list[str], agent: dict | None = None, system: str = "You act.") -> Episode:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "You are in a hall."}]
    for text in assistant:
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "ok"}]
    return Episode(episode_id="e", task_id="t", env_id="agentrl/ALFWorld-v0", split="train", task_type="x",
                   policy="expert", messages=messages, meta={"agent": agent} if agent is not None else {})


def test_file_round_trips_and_bad_values_name_file_and_key(tmp_path):
    fmt = AgentFormat(thoughts=False, example=False, history=3, action_space="admissible", list_admissible=True)
    path = fmt.save(tmp_path)
    assert json.loads(path.read_text())["format"] == 1
    assert agent_format.load(tmp_path) == fmt
    assert agent_format.load(tmp_path / "nothing") is None
    path.write_text(json.dumps({"thoughts": "no", "future_field": 1}))
    with pytest.raises(AgentFormatError, match=r"agent_config.json: `thoughts` must be true or false, got 'no'"):
        agent_format.load(tmp_path)
    path.write_text(json.dumps({"action_space": "any", "future_field": 1}))
    with pytest.raises(AgentFormatError, match="`action_space` must be one of free, admissible"):
        agent_format.load(tmp_path)
    path.write_text(json.dumps({"history": -2}))
    with pytest.raises(AgentFormatError, match="`history` must be null or an integer >= 0"):
        agent_format.load(tmp_path)
    path.write_text("[1, 2")
    with pytest.raises(AgentFormatError, match="not readable JSON"):
        agent_format.load(tmp_path)
    path.write_text(json.dumps({"example": False, "future_field": 1}))  # unknown keys: ignored
    assert agent_format.load(tmp_path) == AgentFormat(example=False)


def test_resolve_takes_flags_then_the_model_then_defaults_and_warns_on_mismatch():
    recorded = AgentFormat(thoughts=False, history=2, example=False)
    fmt, warnings = agent_format.resolve({"thoughts": None, "history": None, "example": False}, recorded)
    assert fmt == recorded and warnings == []  # a flag that agrees with the model is silent
    fmt, warnings = agent_format.resolve({"thoughts": "on", "history": -1}, recorded, source="M")
    assert fmt.thoughts is True and fmt.history is None
    assert warnings == ["M was trained with thoughts off; this run uses thoughts on (the flag wins)",
                        "M was trained with history 2; this run uses history full (the flag wins)"]
    assert agent_format.resolve({"thoughts": "off"}, None) == (AgentFormat(thoughts=False), [])
    # constraining decoding to the admissible commands changes no prompt: no warning
    assert agent_format.resolve({"action_space": "admissible"}, recorded)[1] == []


def test_infer_reads_meta_or_the_chat_and_takes_the_majority_with_a_warning():
    free = _episode(["Action: look", "Action: open door"])
    thinking = _episode(["Think: hm.\nAction: look"])
    fmt, warnings = agent_format.infer([free, free])
    assert fmt.thoughts is False and warnings == []
    fmt, warnings = agent_format.infer([free, free, thinking])
    assert fmt.thoughts is False and warnings == [
        "the episodes disagree on thoughts: off (2) vs on (1); the model records off"]
    # meta.agent wins over the chat; fields the episodes do not record keep the base model's
    fmt, _ = agent_format.infer([_episode(["Action: look"], agent={"thoughts": True, "history": 4})],
                                base=AgentFormat(list_admissible=True))
    assert fmt == AgentFormat(thoughts=True, history=4, list_admissible=True, example=False)
    # an old file without meta.agent: the in-context example is read from the system prompt
    old = _episode(["Action: look"], system="You act.\n\nExample:\nUser: ...")
    assert agent_format.infer([old])[0] == AgentFormat(thoughts=False, example=True)
    assert agent_format.infer([_episode(["Action: look"])])[0].example is False


def test_rollout_records_the_format_in_meta_and_a_model_folder_supplies_it(tmp_path, tiny_model_dir, capsys):
    import shutil

    from agentrl.backends.transformers_backend import TransformersBackend

    cfg = _cfg(tmp_path, thoughts="off")
    rollout(cfg, pool=FakePool(num_tasks=2))
    ep = read_episodes(cfg.out)[0]
    assert ep.meta["agent"] == AgentFormat(thoughts=False).to_dict()

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    AgentFormat(thoughts=False, example=False, history=1).save(model)
    react = dict(policy="react", model=str(model), max_steps=2, max_new_tokens=2, episodes=1)
    backend = TransformersBackend.from_pretrained(str(model))
    run = _cfg(tmp_path, out=str(tmp_path / "a.jsonl"), **react)
    rollout(run, pool=FakePool(num_tasks=1), generator=backend)
    (ep,) = read_episodes(run.out)
    assert ep.meta["agent"] == AgentFormat(thoughts=False, example=False, history=1).to_dict()
    system = ep.messages[0]["content"]
    assert "Think" not in system and "Example:" not in system
    assert ep.meta["history"] == 1 and ep.meta["example"] is False
    assert "warning" not in capsys.readouterr().err

    # a flag overrides the model's format, with a warning
    run = _cfg(tmp_path, out=str(tmp_path / "b.jsonl"), thoughts="on", **react)
    rollout(run, pool=FakePool(num_tasks=1), generator=backend)
    (ep,) = read_episodes(run.out)
    assert ep.meta["agent"]["thoughts"] is True and "Think: <one short" in ep.messages[0]["content"]
    err = capsys.readouterr().err
    assert "agentrl: warning:" in err and "was trained with thoughts off; this run uses thoughts on" in err


def test_model_tiny_and_learn_write_the_format_of_their_data(tmp_path, capsys):
    data = _cfg(tmp_path, thoughts="off", example=False, episodes=4)
    rollout(data, pool=FakePool(num_tasks=4))
    tiny = tmp_path / "tiny"
    assert main(["model", "tiny", "--data", data.out, "--out", str(tiny), "--tokenizer", "word",
                 "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2"]) == 0
    assert agent_format.load(tiny) == AgentFormat(thoughts=False, example=False)
    out = tmp_path / "sft"
    assert main(["learn", "--algo", "sft", "--data", data.out, "--model", str(tiny), "--out", str(out),
                 "--max-steps", "1", "--batch-size", "2", "--lr", "1e-3", "--device", "cpu"]) == 0
    assert agent_format.load(out / "policy") == AgentFormat(thoughts=False, example=False)


def test_a_bad_agent_config_is_a_one_line_error(tmp_path, tiny_model_dir, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "agent_config.json").write_text('{"thoughts": "sometimes"}')
    code = main(["rollout", "--env", "alfworld", "--data", str(tmp_path), "--model", str(model),
                 "--out", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "agent_config.json: `thoughts` must be true or false" in err and "Traceback" not in err


def test_serve_publishes_the_format_and_an_openai_client_adopts_it(tmp_path, tiny_model_dir, capsys):
    import shutil

    pytest.importorskip("openai")
    from agentrl.backends.openai_backend import OpenAIBackend
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.serve import ChatServer

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    fmt = AgentFormat(thoughts=False, example=False)
    backend = TransformersBackend.from_pretrained(str(model))
    with_format = ChatServer(backend, "m", agent_config=fmt.to_dict()).start()
    without = ChatServer(backend, "plain").start()
    try:
        client = OpenAIBackend(with_format.url, "m", max_retries=0)
        assert client.agent_format() == fmt
        assert OpenAIBackend(without.url, "plain", max_retries=0).agent_format() is None
        assert OpenAIBackend(with_format.url, "other", max_retries=0).agent_format() is None
        cfg = _cfg(tmp_path, env="math", dataset="chain-sum", policy="react", backend="openai", base_url=with_format.url,
                   model="m", episodes=1, max_steps=1, max_new_tokens=2)
        rollout(cfg, pool=FakePool(num_tasks=1))
        assert read_episodes(cfg.out)[0].meta["agent"] == fmt.to_dict()
    finally:
        with_format.shutdown()
        without.shutdown()
    # `agentrl serve` reads the folder's file before it loads anything: a bad one is a one-line error
    (model / "agent_config.json").write_text('{"history": "all"}')
    assert main(["serve", "--model", str(model), "--port", "0"]) == 2
    assert "`history` must be null or an integer" in capsys.readouterr().err


def test_eval_prompts_the_model_as_its_agent_config_says(tmp_path, tiny_model_dir, capsys):
    import shutil

    from agentrl.evaluate import EvalConfig, evaluate

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    AgentFormat(thoughts=False, example=False).save(model)
    for name, extra in (("a", {}), ("b", {"thoughts": "on"})):
        cfg = EvalConfig(env="alfworld", data=str(tmp_path), model=str(model), out=str(tmp_path / f"{name}.json"),
                         trajectories=str(tmp_path / f"{name}.jsonl"), max_steps=1, max_new_tokens=2,
                         progress=False, **extra)
        evaluate(cfg, pool=FakePool(num_tasks=1))
    (a,) = read_episodes(tmp_path / "a.jsonl")
    (b,) = read_episodes(tmp_path / "b.jsonl")
    assert a.meta["agent"]["thoughts"] is False and "Think" not in a.messages[0]["content"]
    assert b.meta["agent"]["thoughts"] is True and "Think:" in b.messages[0]["content"]
    assert capsys.readouterr().err.count("was trained with thoughts off; this run uses thoughts on") == 1


def test_a_model_recorded_as_admissible_and_listing_gets_both(tmp_path, tiny_model_dir):
    import shutil

    from agentrl.backends.transformers_backend import TransformersBackend

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    AgentFormat(thoughts=False, action_space="admissible", list_admissible=True).save(model)
    run = _cfg(tmp_path, policy="react", model=str(model), max_steps=2, episodes=1)
    assert run.actions == "admissible"  # the folder's format, before any model is loaded
    rollout(run, pool=FakePool(num_tasks=1), generator=TransformersBackend.from_pretrained(str(model)))
    (ep,) = read_episodes(run.out)
    admissible = {"open door", "look", *[f"go to room {r}" for r in range(4)]}
    assert ep.meta["action_space"] == "admissible" and ep.meta["agent"]["action_space"] == "admissible"
    assert all(s.action in admissible and s.valid for s in ep.steps)
    assert ep.meta["agent"]["list_admissible"] is True
    assert all("\nAdmissible commands: open door" in m["content"] for m in ep.messages[1::2])  # every user turn
