"""kill -9 mid-run, then --resume: every episode exactly once, no corrupt line.

The first test uses the in-process fake pool (always runs); the second is the real thing: ALFWorld tasks from
`agentrl gen alfworld`, the expert policy, 2 env worker processes, `agentrl rollout` killed with SIGKILL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended before it could be killed: {proc.stdout.read() if proc.stdout else ''}"
            )
        time.sleep(0.05)
    pytest.fail(f"{path} did not reach {n} lines in {timeout} s")


def _check(path: Path, expected: set[str]) -> None:
    lines = path.read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # a corrupt line would raise here
    ids = [r["episode_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    failed = [(r["episode_id"], r["error"], len(r["steps"])) for r in rows if not r["success"] or r["error"]]
    assert not failed, failed


def test_kill_9_then_resume_with_the_fake_pool(tmp_path):
    out = tmp_path / "out.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from fake_env import FakePool
        from agentrl.rollout import RolloutConfig, rollout
        cfg = RolloutConfig(env="math", dataset="chain-sum", policy="expert", out={str(out)!r}, num_envs=2,
                            episodes=32, samples_per_task=2, progress=False, resume=len(sys.argv) > 1)
        rollout(cfg, pool=FakePool(num_tasks=16, num_envs=2, delay=float(sys.argv[1]) if len(sys.argv) > 1 else 0.05))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    _wait_for_lines(out, 6, proc, timeout=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = out.read_text().count("\n")
    assert 6 <= killed_at < 32
    subprocess.run([sys.executable, "-c", script, "0"], check=True, timeout=120)
    _check(out, {f"math/train/t{k}/s{s}" for k in range(16) for s in range(2)})


def _alfworld_ready() -> str | None:
    if importlib.util.find_spec("alfworld") is None:
        return "needs the alfworld extra"
    try:
        from agentrl.cli import COMMANDS

        if "gen" not in COMMANDS or importlib.util.find_spec("agentrl.envs.workers") is None:
            return "needs `agentrl gen alfworld` and agentrl.envs.workers (issue 3)"
    except ImportError as err:  # pragma: no cover
        return str(err)
    return None


@pytest.mark.slow
@pytest.mark.alfworld
def test_kill_9_then_resume_32_alfworld_expert_episodes(tmp_path):
    reason = _alfworld_ready()
    if reason:
        pytest.skip(reason)
    agentrl = [sys.executable, "-c", "from agentrl.cli import main; raise SystemExit(main())"]
    data = tmp_path / "alfworld"
    subprocess.run(
        [*agentrl, "gen", "alfworld", "--out", str(data), "--split", "train", "--n", "4", "--seed", "0"],
        check=True,
        timeout=600,
        capture_output=True,
    )
    out = tmp_path / "expert.jsonl"
    args = [
        "rollout",
        "--env",
        "alfworld",
        "--data",
        str(data),
        "--split",
        "train",
        "--policy",
        "expert",
        "--episodes",
        "32",
        "--samples-per-task",
        "8",
        "--num-envs",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    # A new session, so SIGKILL reaches the env worker processes too (as a crash of the whole job would).
    proc = subprocess.Popen(
        [*agentrl, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    _wait_for_lines(out, 4, proc, timeout=300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.read_text().count("\n") < 32
    done = subprocess.run([*agentrl, *args, "--resume"], timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    task_ids = sorted({json.loads(line)["task_id"] for line in out.read_text().splitlines()})
    assert len(task_ids) == 4
    _check(out, {f"alfworld/train/{t}/s{s}" for t in task_ids for s in range(8)})


def test_real_env_pool_hung_and_crashing_envs_become_error_episodes(tmp_path):
    from agentrl.envs.workers import EnvPool
    from agentrl.rollout import RolloutConfig, rollout

    pool = EnvPool("hang_env:Corridor-v0", {}, 2, step_timeout=2.0)
    cfg = RolloutConfig(
        env="alfworld",
        data=str(tmp_path),
        policy="expert",
        out=str(tmp_path / "o.jsonl"),
        num_envs=2,
        progress=False,
        step_timeout=2.0,
    )
    started = time.monotonic()
    try:
        summary = rollout(cfg, pool=pool)
    finally:
        pool.close()
    rows = {json.loads(line)["task_id"]: json.loads(line) for line in Path(cfg.out).read_text().splitlines()}
    assert sorted(rows) == ["t0", "t1", "t2", "t3", "t_crash", "t_hang"]
    assert rows["t_hang"]["error"].startswith("env timeout during step")
    assert (
        rows["t_crash"]["error"].startswith("env error during step")
        and "engine crashed" in rows["t_crash"]["error"]
    )
    assert all(rows[t]["success"] for t in ("t0", "t1", "t2", "t3"))
    assert summary["errors"] == 2 and time.monotonic() - started < 60
