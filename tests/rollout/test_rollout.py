"""The rollout engine against an in-process fake pool: assignment, resume, errors, determinism, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_env import FakePool

from agentrl.cli import main
from agentrl.config import ConfigError
from agentrl.rollout import RolloutConfig, plan_episodes, rollout
from agentrl.trajectory import TrajectoryWriter, iter_episodes


def _cfg(tmp_path: Path, **kw) -> RolloutConfig:
    base = {
        "env": "math",
        "dataset": "chain-sum",
        "policy": "expert",
        "out": str(tmp_path / "out.jsonl"),
        "progress": False,
    }
    base.update(kw)
    return RolloutConfig(**base)


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_plan_is_task_order_times_sample():
    assert plan_episodes(["a", "b"], 2, None) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert plan_episodes(["a", "b"], 2, 3) == [("a", 0), ("a", 1), ("b", 0)]
    with pytest.raises(ConfigError, match="only 2 tasks x 2 samples = 4"):
        plan_episodes(["a", "b"], 2, 5)


def test_expert_episodes_written_once_each_and_successful(tmp_path):
    cfg = _cfg(tmp_path, env="alfworld", data=str(tmp_path), episodes=10, samples_per_task=2, num_envs=3)
    seen = []
    pool = FakePool(num_tasks=5, num_envs=3)
    summary = rollout(cfg, on_step=lambda slot, ctx, dec, res: seen.append((slot, dec.action)), pool=pool)
    episodes = list(iter_episodes(cfg.out))
    ids = [e.episode_id for e in episodes]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert set(ids) == {f"alfworld/train/t{k}/s{s}" for k in range(5) for s in range(2)}
    assert all(e.success and e.reward == 1.0 and e.num_steps == 2 and e.error is None for e in episodes)
    assert summary["written"] == 10 and summary["successes"] == 10 and summary["env_steps"] == 20
    assert len(seen) == 20 and {slot for slot, _ in seen} == {0, 1, 2}
    ep = episodes[0]
    # Messages: system, first observation, then assistant/user pairs in the ReAct format.
    assert [m["role"] for m in ep.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert (
        ep.messages[2]["content"].startswith("Think: ") and "\nAction: open door" in ep.messages[2]["content"]
    )
    assert ep.steps[0].observation.startswith("You are in a hall")
    assert ep.steps[1].observation == "You open the door."
    assert {e.task_type for e in episodes} == {"even", "odd"}
    assert not pool.closed  # a pool passed in belongs to the caller


def test_existing_output_needs_resume_and_resume_skips_finished(tmp_path):
    cfg = _cfg(tmp_path, episodes=4)
    rollout(cfg, pool=FakePool(num_tasks=6))
    with pytest.raises(ConfigError, match="--resume"):
        rollout(_cfg(tmp_path, episodes=6), pool=FakePool(num_tasks=6))
    # Simulate a crash mid-write: a torn last line.
    with open(cfg.out, "a") as f:
        f.write('{"schema": 1, "episode_id": "math/tr')
    pool = FakePool(num_tasks=6)
    summary = rollout(_cfg(tmp_path, episodes=6, resume=True), pool=pool)
    assert summary["skipped"] == 4 and summary["written"] == 2
    assert [kw["options"]["task_id"] for _, kw in pool.resets] == ["t4", "t5"]
    ids = [d["episode_id"] for d in _lines(cfg.out)]
    assert ids == [f"math/train/t{k}/s0" for k in range(6)]
    # A damaged line in the middle is not a torn tail: resuming refuses and names file:line.
    lines = Path(cfg.out).read_text().splitlines(keepends=True)
    Path(cfg.out).write_text("".join([lines[0], "{not json\n", *lines[1:]]))
    with pytest.raises(ConfigError, match=r"out.jsonl:2: invalid JSON"):
        rollout(_cfg(tmp_path, episodes=6, resume=True), pool=FakePool(num_tasks=6))


def test_a_file_another_writer_holds_is_refused_not_written_twice(tmp_path):
    """Two processes resuming one file would each write the missing episodes; the second one fails instead."""
    cfg = _cfg(tmp_path, episodes=2)
    rollout(cfg, pool=FakePool(num_tasks=4))
    with TrajectoryWriter(cfg.out):  # another run still writing
        with pytest.raises(ConfigError, match="being written by another process"):
            rollout(_cfg(tmp_path, episodes=4, resume=True), pool=FakePool(num_tasks=4))
    assert len(_lines(cfg.out)) == 2
    summary = rollout(_cfg(tmp_path, episodes=4, resume=True), pool=FakePool(num_tasks=4))  # lock released
    assert summary["written"] == 2 and len({d["episode_id"] for d in _lines(cfg.out)}) == 4


def test_env_errors_and_timeouts_are_recorded_and_the_run_goes_on(tmp_path):
    cfg = _cfg(tmp_path, num_envs=2)
    summary = rollout(cfg, pool=FakePool(num_tasks=5, num_envs=2, fail={"t1"}, hang={"t3"}))
    by_task = {d["task_id"]: d for d in _lines(cfg.out)}
    assert sorted(by_task) == ["t0", "t1", "t2", "t3", "t4"]
    assert by_task["t1"]["error"].startswith("env error during step: engine crashed")
    assert by_task["t3"]["error"].startswith("env timeout during step")
    assert not by_task["t1"]["success"] and by_task["t0"]["success"] and by_task["t4"]["success"]
    assert summary["errors"] == 2 and summary["successes"] == 3


def test_max_steps_truncates(tmp_path):
    cfg = _cfg(tmp_path, env="alfworld", data=str(tmp_path), policy="random", max_steps=1, episodes=3)
    rollout(cfg, pool=FakePool(num_tasks=3))
    for d in _lines(cfg.out):
        assert len(d["steps"]) == 1 and d["meta"]["truncated"] in (True, False)
        assert d["policy"] == "random"


def test_same_seed_same_file_whatever_the_number_of_envs(tmp_path):
    def run(num_envs: int, name: str) -> list[dict]:
        cfg = _cfg(
            tmp_path,
            env="alfworld",
            data=str(tmp_path),
            policy="random",
            max_steps=4,
            num_envs=num_envs,
            out=str(tmp_path / name),
            seed=3,
        )
        rollout(cfg, pool=FakePool(num_tasks=6, num_envs=num_envs))
        rows = sorted(_lines(cfg.out), key=lambda d: d["episode_id"])
        for d in rows:
            d["meta"].pop("seconds")
        return rows

    assert run(1, "a.jsonl") == run(3, "b.jsonl")


def test_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="alfworld needs `data`"):
        RolloutConfig(env="alfworld", out="x.jsonl")
    with pytest.raises(ConfigError, match="no such folder"):
        RolloutConfig(env="alfworld", data=str(tmp_path / "missing"), out="x.jsonl")
    with pytest.raises(ConfigError, match="`num_envs` must be >= 1"):
        RolloutConfig(env="math", out="x.jsonl", num_envs=0)
    with pytest.raises(ConfigError, match="`top_p`"):
        RolloutConfig(env="math", out="x.jsonl", top_p=0)


def test_policy_that_cannot_run_in_the_env_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="admissible actions"):
        RolloutConfig(env="math", out="x.jsonl", policy="random")

    class NoExpertPool(FakePool):
        def reset(self, requests):
            out = super().reset(requests)
            for _, info in out.values():
                del info["expert_action"]
            return out

    with pytest.raises(ConfigError, match=r"no info\['expert_action'\]"):
        rollout(_cfg(tmp_path), pool=NoExpertPool(num_tasks=2))


def test_cli_unknown_config_key_names_the_valid_one(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("env: math\nout: x.jsonl\nepisdoes: 3\n")
    assert main(["rollout", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "episdoes" in err and "`episodes`" in err and f"{config}:3" in err
    assert main(["rollout", "--env", "math", "--out", "x.jsonl", "--episdoes", "3"]) == 2
    assert "`episodes`" in capsys.readouterr().err


def test_vllm_backend_without_vllm_is_a_config_error_with_the_install_hint(capsys):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed")
    assert main(["rollout", "--env", "math", "--out", "x.jsonl", "--backend", "vllm"]) == 2
    assert "agentrl[vllm]" in capsys.readouterr().err


def test_cli_missing_data_exits_2(tmp_path, capsys):
    assert main(["rollout", "--env", "alfworld", "--data", str(tmp_path / "nope"), "--out", "x.jsonl"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_react_rollout_with_a_real_tiny_model_records_messages_and_meta(tmp_path, tiny_model):
    from agentrl.backends.transformers_backend import TransformersBackend

    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    cfg = _cfg(
        tmp_path,
        env="alfworld",
        data=str(tmp_path),
        policy="react",
        model="tiny",
        episodes=2,
        num_envs=2,
        max_steps=2,
        max_new_tokens=4,
        temperature=0.7,
        seed=1,
    )
    steps = []
    summary = rollout(cfg, on_step=lambda *a: steps.append(a), pool=FakePool(num_tasks=2), generator=backend)
    rows = _lines(cfg.out)
    assert len(rows) == 2 and len(steps) == 4
    for row in rows:
        assert row["policy"] == "react" and len(row["steps"]) == 2
        assert row["meta"]["model"] == "tiny" and row["meta"]["backend"] == "transformers"
        assert row["meta"]["sampling"] == {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 4}
        assistant = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert len(assistant) == 2
        for step, raw in zip(row["steps"], assistant, strict=True):
            assert step["valid"] is False and step["action"] == raw  # an untrained model writes no "Action:"
    assert summary["generated_tokens"] == 2 * 2 * 4 == backend.stats.generated_tokens
    assert backend._cache == {}  # every finished episode released its KV cache
