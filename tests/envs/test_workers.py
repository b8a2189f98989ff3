"""EnvPool: parallel slots, per-step timeout with worker restart, in-process mode."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agentrl.envs.workers import EnvError, EnvPool

SLOW_ENV = '''
import time
import gymnasium as gym
from gymnasium.envs.registration import register, registry


class Sleepy(gym.Env):
    """Sleeps as many seconds as the action says; "crash" raises."""

    observation_space = gym.spaces.Text(100)
    action_space = gym.spaces.Text(100)
    task_ids = ["a", "b"]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "ready", {"task_id": "a"}

    def step(self, action):
        if action == "crash":
            raise RuntimeError("engine crashed")
        time.sleep(float(action))
        return f"slept {action}", 0.0, False, False, {}


if "Sleepy-v0" not in registry:
    register(id="Sleepy-v0", entry_point=Sleepy)
'''


@pytest.fixture()
def sleepy_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "agentrl_sleepy_env.py").write_text(SLOW_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "agentrl_sleepy_env:Sleepy-v0"


def test_slots_run_in_parallel_and_timeout_restarts_one_slot(sleepy_id: str) -> None:
    with EnvPool(sleepy_id, {}, 3, step_timeout=2.0) as pool:
        assert pool.task_ids == ["a", "b"]
        resets = pool.reset({0: {"seed": 0}, 1: {}, 2: {}})
        assert all(r == ("ready", {"task_id": "a"}) for r in resets.values())
        start = time.monotonic()
        out = pool.step({0: "0.8", 1: "0.8", 2: "0.8"})
        assert time.monotonic() - start < 2.0  # three 0.8 s steps at once, not 2.4 s in a row
        assert [out[s][0] for s in range(3)] == ["slept 0.8"] * 3
        start = time.monotonic()
        out = pool.step({0: "60", 1: "0", 2: "crash"})
        assert time.monotonic() - start < 10
        assert isinstance(out[0], EnvError) and out[0].timed_out and out[0].slot == 0
        assert out[1][0] == "slept 0"
        assert isinstance(out[2], EnvError) and not out[2].timed_out and "engine crashed" in out[2].message
        # the restarted worker answers again after a reset
        assert pool.reset({0: {}})[0][0] == "ready"
        assert pool.step({0: "0"})[0][0] == "slept 0"


def test_in_process_mode_and_bad_slots() -> None:
    pool = EnvPool("agentrl/Math-v0", {"dataset": "gsm8k-test-100", "split": "test"}, 2, processes=False)
    assert len(pool.task_ids) == 100
    out = pool.reset({0: {"seed": 1}, 1: {"options": {"task_id": pool.task_ids[0]}}})
    assert out[1][1]["task_id"] == pool.task_ids[0]
    step = pool.step({0: "#### -1"})
    assert step[0][2] is True
    with pytest.raises(ValueError, match="unknown slots"):
        pool.step({5: "x"})
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.step({0: "x"})


def test_startup_error_is_clear() -> None:
    with pytest.raises(RuntimeError, match="unknown math dataset"):
        EnvPool("agentrl/Math-v0", {"dataset": "nope"}, 1)
