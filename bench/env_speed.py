"""ALFWorld env speed: agentrl/ALFWorld-v0 vs alfworld's own AlfredTWEnv, side by side in one run.

Usage (CPU only; needs the alfworld extra):
    PYTHONPATH=. python bench/env_speed.py [--tasks-per-size 2] [--episodes 3] [--seconds 20]

1. Generates small / medium / large rooms with the offline generator (same files for both envs).
2. For each task, replays the expert walkthrough ``--episodes`` times in both envs (both with alfworld's hand-coded
   expert switched on, as in DAgger training) and checks the observations are identical; reports steps/s and
   reset latency. AlfredTWEnv reloads the game on every reset; agentrl's reset is timed cold (no cache at all),
   disk-cached (a new process meeting a game seen before) and for the same task again.
3. Scaling: ``EnvPool`` with 1 vs 2 worker processes replaying medium-room walkthroughs for ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _walkthrough(task_dir: Path) -> list[str]:
    return json.loads((task_dir / "game.tw-pddl").read_text())["walkthrough"]


def bench_agentrl(root: Path, task_id: str, actions: list[str], episodes: int) -> dict:
    from agentrl.envs.alfworld import engine
    from agentrl.envs.alfworld.env import ALFWorldEnv

    cold_cache = Path(tempfile.mkdtemp(prefix="agentrl-engine-cache-"))
    engine._GAMES.clear()
    env = ALFWorldEnv(root, "train", cache_dir=str(cold_cache))
    t = time.perf_counter()
    env.reset(options={"task_id": task_id})
    reset_new = time.perf_counter() - t  # nothing cached anywhere: translation + grammar parse
    env.close()
    engine._GAMES.clear()
    env = ALFWorldEnv(root, "train", cache_dir=str(cold_cache))
    t = time.perf_counter()
    env.reset(options={"task_id": task_id})
    reset_disk = time.perf_counter() - t  # a new process meeting a game it has seen: disk cache only
    resets, steps, step_time, observations = [], 0, 0.0, []
    for episode in range(episodes):
        t = time.perf_counter()
        env.reset(options={"task_id": task_id})
        resets.append(time.perf_counter() - t)
        t = time.perf_counter()
        for action in actions:
            obs, *_ = env.step(action)
            if episode == 0:
                observations.append(obs)
        step_time += time.perf_counter() - t
        steps += len(actions)
    env.close()
    return {"reset_new_s": reset_new, "reset_disk_s": reset_disk, "reset_same_s": statistics.median(resets), "steps_per_s": steps / step_time,
            "observations": observations}


def bench_alfredtwenv(task_dir: Path, actions: list[str], episodes: int) -> dict:
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

    config = {
        "dataset": {"data_path": str(task_dir), "num_train_games": -1},
        "logic": {"domain": ALFRED_PDDL_PATH, "grammar": ALFRED_TWL2_PATH},
        "env": {"task_types": [1, 2, 3, 4, 5, 6], "goal_desc_human_anns_prob": 0, "domain_randomization": False,
                "expert_type": "handcoded"},
        "general": {"training_method": "dagger"},
        "dagger": {"training": {"max_nb_steps_per_episode": 50}},
    }
    tw = AlfredTWEnv(config, train_eval="train")
    if tw.num_games != 1:
        raise RuntimeError(f"AlfredTWEnv found {tw.num_games} games under {task_dir}, expected 1")
    env = tw.init_env(batch_size=1)
    resets, steps, step_time, observations = [], 0, 0.0, []
    for episode in range(episodes):
        t = time.perf_counter()
        env.reset()
        resets.append(time.perf_counter() - t)
        t = time.perf_counter()
        for action in actions:
            obs, _, _, _ = env.step([action])
            if episode == 0:
                observations.append(obs[0])
        step_time += time.perf_counter() - t
        steps += len(actions)
    env.close()
    return {"reset_s": statistics.median(resets), "steps_per_s": steps / step_time, "observations": observations}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_pool(root: Path, workers: int, seconds: float) -> tuple[float, float, float]:
    """EnvPool with ``workers`` slots replaying walkthroughs of the medium tasks.

    Returns (steps/s, worker CPU seconds per step, cores the workers obtained). The CPU figures matter on a shared
    machine: Linux's autogroup scheduler gives each session a fixed share, so extra workers there get no extra
    CPU; CPU per step tells whether the work itself parallelises.
    """
    from agentrl.envs.workers import EnvPool

    with EnvPool("agentrl/ALFWorld-v0", {"data": str(root), "split": "train"}, workers) as pool:
        tasks = pool.task_ids
        plans = {}
        for slot in range(workers):
            task_id = tasks[slot % len(tasks)]
            plans[slot] = [task_id, _walkthrough(root / "json_2.1.1" / "train" / task_id), 0]
            pool.reset({slot: {"options": {"task_id": task_id}}})
        pids = [pool._slots[slot].process.pid for slot in range(workers)]
        cpu0 = sum(_cpu_seconds(pid) for pid in pids)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            actions = {s: p[1][p[2]] for s, p in plans.items()}
            pool.step(actions)
            steps += len(actions)
            resets = {}
            for s, p in plans.items():
                p[2] += 1
                if p[2] == len(p[1]):
                    p[2] = 0
                    resets[s] = {"options": {"task_id": p[0]}}
            if resets:
                pool.reset(resets)
        wall = time.perf_counter() - start
        cpu = sum(_cpu_seconds(pid) for pid in pids) - cpu0
        return steps / wall, cpu / steps, cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks-per-size", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each worker-scaling run")
    args = parser.parse_args()
    os.environ.setdefault("ALFWORLD_DATA", tempfile.mkdtemp(prefix="alfworld-data-"))
    from rich.console import Console
    from rich.table import Table

    from agentrl.envs.alfworld.generator import generate

    console = Console(width=150)
    tmp = Path(tempfile.mkdtemp(prefix="agentrl-envspeed-"))
    rows = []
    for size in ("small", "medium", "large"):
        root = tmp / size
        tasks = generate(root, "train", args.tasks_per_size, seed=0, room_size=size, progress=False)
        for task in tasks:
            task_id = f"{task.path.parent.name}/{task.path.name}"
            actions = _walkthrough(task.path)
            ours = bench_agentrl(root, task_id, actions, args.episodes)
            single = tmp / "single" / size / task.path.name
            (single / "json_2.1.1" / "train").mkdir(parents=True, exist_ok=True)
            # a copy, not a symlink: AlfredTWEnv's os.walk does not follow links
            shutil.copytree(task.path, single / "json_2.1.1" / "train" / task.path.parent.name / task.path.name)
            theirs = bench_alfredtwenv(single / "json_2.1.1" / "train", actions, args.episodes)
            problem = (task.path / "initial_state.pddl").read_text()
            rows.append({
                "size": size, "task": task_id,
                "receptacles": len(re.findall(r"^\s+\S+ - receptacle$", problem, flags=re.MULTILINE)),
                "objects": len(re.findall(r"^\s+\S+ - object$", problem, flags=re.MULTILINE)), "steps": len(actions),
                "same_observations": ours.pop("observations") == theirs.pop("observations"),
                "agentrl": ours, "alfredtwenv": theirs,
            })
    table = Table(title="agentrl/ALFWorld-v0 vs AlfredTWEnv (same games, expert walkthrough replayed)")
    for col in ("room", "recep/obj", "steps/s ours", "steps/s alfworld", "ratio", "reset cold", "reset disk-cached",
                "reset same task", "reset alfworld", "same obs"):
        table.add_column(col)
    for r in rows:
        o, a = r["agentrl"], r["alfredtwenv"]
        table.add_row(r["size"], f"{r['receptacles']}/{r['objects']}", f"{o['steps_per_s']:.1f}",
                      f"{a['steps_per_s']:.1f}", f"{o['steps_per_s'] / a['steps_per_s']:.2f}x",
                      f"{o['reset_new_s']:.3f} s", f"{o['reset_disk_s']:.3f} s", f"{o['reset_same_s']:.3f} s", f"{a['reset_s']:.3f} s",
                      str(r["same_observations"]))
    console.print(table)
    medium = tmp / "medium"
    one, cpu_one, cores_one = bench_pool(medium, 1, args.seconds)
    two, cpu_two, cores_two = bench_pool(medium, 2, args.seconds)
    console.print(f"EnvPool on medium rooms: 1 worker {one:.1f} steps/s, 2 workers {two:.1f} steps/s -> {two / one:.2f}x "
                  f"(machine has {os.cpu_count()} CPUs; workers obtained {cores_one:.2f} vs {cores_two:.2f} cores)")
    console.print(f"  worker CPU per step: {cpu_one * 1000:.1f} ms (1 worker) vs {cpu_two * 1000:.1f} ms (2 workers) "
                  f"-> parallel efficiency {cpu_one / cpu_two:.2f}; with a free core per worker 2 workers would give "
                  f"~{2 * cpu_one / cpu_two:.2f}x")
    print(json.dumps({"rows": rows, "pool": {"1": [one, cpu_one, cores_one], "2": [two, cpu_two, cores_two]}},
                     indent=1))


if __name__ == "__main__":
    main()
