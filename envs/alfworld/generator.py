"""Offline ALFWorld task generator: solvable tasks in the real ``alfworld-download`` layout.

``generate(out, split, n, seed)`` writes ``out/json_2.1.1/<split>/<task>/<trial>/{traj_data.json,
initial_state.pddl, game.tw-pddl}``. Task ``i`` has type ``TASK_TYPES[i % 6]`` (so any ``n >= 6`` covers all six; ``task_types`` picks a subset),
a room from alfworld's FloorPlan layouts of a kind ALFRED allows for that type (``GOALS_VALID``: heat/cool in
kitchens, look-at-in-light in living rooms and bedrooms, ...), every placeable object class of the scene with
1-3 instances (distractors, several instances of a type), all openable receptacles closed. Each candidate is
played by alfworld's hand-coded expert through the real engine and kept only if it wins within the step cap;
otherwise another candidate is drawn (only kept tasks go to the engine's disk cache of translations). Everything
derives from ``random.Random(f"{seed}/{split}/{i}")``, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich import progress as bars

from agentrl.envs.alfworld.engine import default_cache_dir, save_game, start_game
from agentrl.envs.alfworld.expert import HandCodedExpert
from agentrl.envs.alfworld.pddl import (
    TASK_TYPES,
    Placement,
    Problem,
    game_json,
    problem_pddl,
    task_description,
    write_json,
)
from agentrl.envs.alfworld.rooms import LAMPS, Room, alfworld_constants, load_room, split_scenes

SPLITS = ("train", "valid_seen", "valid_unseen")
ROOM_SIZES = {"any": (0, 10**6), "small": (0, 8), "medium": (9, 20), "large": (21, 10**6)}
MAX_ATTEMPTS = 200
GENERATOR_VERSION = 1


class GenerationError(RuntimeError):
    """No solvable task could be drawn (e.g. a room-size filter that no scene of the split satisfies)."""


@dataclass(frozen=True)
class GeneratedTask:
    """Where a task was written and what it is."""

    path: Path
    task_type: str
    scene: int
    expert_steps: int


def _scenes_for(task_type: str, split: str, room_size: str) -> list[int]:
    valid_kinds = alfworld_constants().GOALS_VALID[task_type]
    low, high = ROOM_SIZES[room_size]
    out = []
    for scene in split_scenes(split):
        room = load_room(scene)
        if room.kind in valid_kinds and low <= len(room.receptacles) <= high:
            out.append(scene)
    return out


def _choose_targets(task_type: str, room: Room, rng: random.Random) -> tuple[str, str, str] | None:
    """``(object, parent receptacle class, toggle)`` for a task in ``room``, or None if the room cannot host it."""
    actions = alfworld_constants().VAL_ACTION_OBJECTS
    classes = room.receptacle_classes()
    pickable = [c for c in room.object_classes if c not in LAMPS]
    if task_type == "look_at_obj_in_light":
        lamps = [c for c in room.object_classes if c in LAMPS and room.receptacles_for(c)]
        if not lamps or not pickable:
            return None
        return rng.choice(pickable), "", rng.choice(lamps)
    need = {"pick_clean_then_place_in_recep": ("Cleanable", "SinkBasin"),
            "pick_heat_then_place_in_recep": ("Heatable", "Microwave"),
            "pick_cool_then_place_in_recep": ("Coolable", "Fridge")}.get(task_type)
    if need:
        prop, tool = need
        if tool not in classes:
            return None
        pickable = [c for c in pickable if c in actions[prop]]
    table = alfworld_constants().VAL_RECEPTACLE_OBJECTS
    pairs = []
    for obj in pickable:
        for parent in sorted(classes):
            if obj in table.get(parent, ()) and (not need or parent != need[1]):
                others = [r for r in room.receptacles_for(obj) if r.cls != parent]
                if others:
                    pairs.append((obj, parent))
    if not pairs:
        return None
    obj, parent = rng.choice(pairs)
    return obj, parent, ""


def _populate(room: Room, task_type: str, obj: str, parent: str, toggle: str, rng: random.Random) -> list[Placement]:
    """Every placeable class of the room with 1-3 instances; targets never start inside the goal receptacle."""
    placements = []
    used_ids: set[str] = set()
    for cls in room.object_classes:
        if cls in LAMPS and cls != toggle:
            continue
        spots = room.receptacles_for(cls)
        if cls == obj:
            spots = [r for r in spots if r.cls != parent]
            count = rng.randint(2, 3) if task_type == "pick_two_obj_and_place" else rng.randint(1, 3)
        elif cls == toggle:
            count = 1
        else:
            count = rng.randint(1, 3)
        if not spots:
            continue
        for _ in range(count):
            while True:
                coords = "|".join(f"{rng.uniform(-3, 3):+06.2f}" for _ in range(3))
                instance_id = f"{cls}|{coords}"
                if instance_id not in used_ids:
                    used_ids.add(instance_id)
                    break
            placements.append(Placement(instance_id, cls, rng.choice(spots)))
    return placements


def _candidate(task_type: str, scenes: list[int], rng: random.Random, name: str):
    """One random task (``Problem``, description, params) or None when the drawn room cannot host the type."""
    scene = rng.choice(scenes)
    room = load_room(scene)
    targets = _choose_targets(task_type, room, rng)
    if targets is None:
        return None
    obj, parent, toggle = targets
    objects = _populate(room, task_type, obj, parent, toggle, rng)
    agent = f"loc|{rng.randint(-12, 12)}|{rng.randint(-12, 12)}|{rng.randint(0, 3)}|30"
    problem = Problem(name, list(room.receptacles), objects, agent, task_type, obj, parent, toggle)
    recep_word = toggle if task_type == "look_at_obj_in_light" else parent
    desc = task_description(task_type, obj, parent, toggle, rng.randint(0, 1))
    params = {"object_target": obj, "parent_target": parent, "toggle_target": toggle, "mrecep_target": "",
              "object_sliced": False}
    return scene, problem, desc, params, f"{task_type}-{obj}-None-{recep_word}-{scene}"


_VERIFY_ENGINE = None


def play_expert(gamefile: str, max_steps: int = 50) -> list[str] | None:
    """Plays alfworld's hand-coded expert on a game; its actions if it wins within ``max_steps``, else None."""

    global _VERIFY_ENGINE
    if _VERIFY_ENGINE is None:  # one engine per process: each new one dlopens a copy of fast-downward
        # candidates are translated in memory only (most are rejected); generate_one stores the kept task's
        _VERIFY_ENGINE = start_game(gamefile, write_cache=False)
    else:
        _VERIFY_ENGINE.load(gamefile)
    state = _VERIFY_ENGINE.reset()
    expert = HandCodedExpert(gamefile)
    action = expert.start(state)
    actions = []
    for _ in range(max_steps):
        state, _, _ = _VERIFY_ENGINE.step(action)
        actions.append(action)
        if state["won"]:
            return actions
        action = expert.next_action(state, action)
        if expert.failed:
            return None
    return None


def generate_one(root: Path, split: str, seed: int, index: int, room_size: str = "any",
                 max_steps: int = 50, task_types: tuple[str, ...] = TASK_TYPES) -> GeneratedTask:
    """Draws candidates for task ``index`` until the expert solves one, then writes it under ``root``."""
    task_type = task_types[index % len(task_types)]
    scenes = _scenes_for(task_type, split, room_size)
    if not scenes:
        raise GenerationError(f"no {room_size} room of split {split} can host {task_type}")
    rng = random.Random(f"{seed}/{split}/{index}")
    trial = f"trial_T{seed:06d}_{index:06d}"
    with tempfile.TemporaryDirectory(prefix="agentrl-gen-") as tmp:
        for _attempt in range(MAX_ATTEMPTS):
            drawn = _candidate(task_type, scenes, rng, name=f"plan_{trial}")
            if drawn is None:
                continue
            scene, problem, desc, params, task_dir = drawn
            text = problem_pddl(problem)
            work = Path(tmp) / trial
            work.mkdir(exist_ok=True)
            traj = {
                "task_id": trial,
                "task_type": task_type,
                "pddl_params": params,
                "scene": {"floor_plan": f"FloorPlan{scene}", "scene_num": scene},
                "turk_annotations": {"anns": [{"task_desc": desc, "high_descs": [], "votes": []}]},
                "agentrl": {"generator_version": GENERATOR_VERSION, "seed": seed, "index": index, "split": split},
            }
            write_json(work / "traj_data.json", traj)
            (work / "initial_state.pddl").write_text(text)
            write_json(work / "game.tw-pddl", game_json(text, desc, None))
            walkthrough = play_expert(str(work / "game.tw-pddl"), max_steps=max_steps)
            if walkthrough is None:
                continue
            game = game_json(text, desc, walkthrough)
            write_json(work / "game.tw-pddl", game)
            save_game(game["pddl_domain"], text, default_cache_dir())  # its later resets load it from disk
            dest = root / "json_2.1.1" / split / task_dir / trial
            if dest.exists():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(work, dest)
            return GeneratedTask(dest, task_type, scene, len(walkthrough))
    raise GenerationError(f"task {index} ({task_type}): no expert-solvable candidate in {MAX_ATTEMPTS} draws")


def _generate_job(job: tuple) -> GeneratedTask:
    return generate_one(*job)


def tasks_digest(root: str | Path) -> str:
    """sha256 over every file under ``root`` (relative path and bytes, in sorted order): one value that changes
    whenever :func:`generate` writes anything different (the reproducibility check of a task folder)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def generate(root: str | Path, split: str, n: int, seed: int = 0, room_size: str = "any", max_steps: int = 50,
             workers: int = 1, progress: bool = True, task_types: Sequence[str] = TASK_TYPES) -> list[GeneratedTask]:
    """Writes ``n`` expert-verified tasks of ``split`` under ``root`` (see module docstring).

    Args:
        root: data root; tasks go to ``root/json_2.1.1/<split>/``.
        split: ``train``, ``valid_seen`` or ``valid_unseen`` (unseen uses ALFRED's test floor plans only).
        n: number of tasks; task ``i`` has type ``task_types[i % len(task_types)]``.
        seed: base seed; the same seed and split give identical files (whatever ``workers`` is).
        room_size: ``any``, ``small`` (<= 8 receptacles), ``medium`` (9-20) or ``large`` (> 20).
        max_steps: the expert must win within this many steps (ALFWorld caps episodes at 50).
        workers: processes drawing and verifying tasks in parallel.
        progress: show a rich progress bar.
        task_types: the types to cycle through (default all six, in ``TASK_TYPES`` order); a subset keeps
            task ``i``'s seed, so ``("pick_and_place_simple",)`` gives other tasks than the default's type-0 ones.

    Returns:
        One :class:`GeneratedTask` per task, in index order.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if room_size not in ROOM_SIZES:
        raise ValueError(f"room_size must be one of {', '.join(ROOM_SIZES)}, got {room_size!r}")
    task_types = tuple(task_types)
    unknown = sorted(set(task_types) - set(TASK_TYPES))
    if unknown or not task_types:
        given = f"unknown task types {unknown}" if unknown else "no task types given"
        raise ValueError(f"{given}; valid: {', '.join(TASK_TYPES)}")
    root = Path(root)
    jobs = [(root, split, seed, i, room_size, max_steps, task_types) for i in range(n)]
    pool = None
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_generate_job, jobs)
    else:
        results = map(_generate_job, jobs)
    tasks: list[GeneratedTask] = []
    counts: Counter[str] = Counter()
    try:
        if not progress:
            return list(results)

        columns = (bars.TextColumn("[bold]{task.description}"), bars.BarColumn(),
                   bars.MofNCompleteColumn(), bars.TimeElapsedColumn(), bars.TimeRemainingColumn(),
                   bars.TextColumn("{task.fields[last]}"))
        with bars.Progress(*columns) as bar:
            job = bar.add_task(f"ALFWorld {split}", total=n, last="")
            for task in results:
                tasks.append(task)
                counts[task.task_type] += 1
                bar.update(job, advance=1,
                           last=f"{task.task_type} FloorPlan{task.scene} ({task.expert_steps} expert steps)")
        return tasks
    finally:
        if pool is not None:
            pool.terminate()
