"""Offline ALFWorld task generator: solvable tasks in the real ``alfworld-download`` layout.

``generate(out, split, n, seed)`` writes ``out/json_2.1.1/<split>/<task>/<trial>/{traj_data.json,
initial_state.pddl, game.tw-pddl}``. Task ``i`` has type ``TASK_TYPES[i % 6]`` (so any ``n >= 6`` covers all six; ``task_types`` picks a subset),
a room from alfworld's FloorPlan layouts of a kind ALFRED allows for that type (``GOALS_VALID``: heat/cool in
kitchens, look-at-in-light in living rooms and bedrooms, ...), every placeable object class of the scene with
1-3 instances (distractors, several instances of a type), all openable receptacles closed. Each candidate is
played by alfworld's hand-coded expert through the real engine and kept only if it wins within the step cap;
otherwise another candidate is drawn (only kept tasks go to the engine's disk cache of translations). Everything
derives from ``random.Random(f"{seed}/{split}/{i}")``, so the same arguments give byte-identical files.

A run resumes: an index whose trial folder is already there, complete and written by this ``GENERATOR_VERSION``
for the same seed, split and index is kept, not redrawn (a killed 1,500-task run loses only the tasks in flight).
Trials are staged under ``root/.agentrl-staging/`` and renamed into place, so a trial folder that exists is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
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
STAGING = ".agentrl-staging"  # under root but outside json_2.1.1/, where find_tasks never looks
TRIAL_FILES = ("traj_data.json", "initial_state.pddl", "game.tw-pddl")


class GenerationError(RuntimeError):
    """No solvable task could be drawn (e.g. a room-size filter that no scene of the split satisfies)."""


@dataclass(frozen=True)
class GeneratedTask:
    """Where a task was written and what it is."""

    path: Path
    task_type: str
    scene: int
    expert_steps: int
    reused: bool = field(default=False, compare=False)  # found on disk by a resumed run, not drawn again


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
            _publish(work, dest, root / STAGING / f"{split}-{trial}")
            return GeneratedTask(dest, task_type, scene, len(walkthrough))
    raise GenerationError(f"task {index} ({task_type}): no expert-solvable candidate in {MAX_ATTEMPTS} draws")


def _publish(work: Path, dest: Path, staged: Path) -> None:
    """Puts a finished trial folder at ``dest`` in one rename: a copy cut short by a kill stays at ``staged`` (same
    file system, outside the dataset tree), so a trial folder that exists is complete and a resumed run may keep it."""
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(work, staged)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, dest)


def _trials_on_disk(split_dir: Path, seed: int) -> dict[int, list[Path]]:
    """The trial folders of ``seed`` under a split folder, by task index (one glob for the whole split, not one per
    index: a 1,500-task split would otherwise be listed 1,500 times)."""
    found: dict[int, list[Path]] = defaultdict(list)
    for trial in split_dir.glob(f"*/trial_T{seed:06d}_*"):
        index = trial.name.rsplit("_", 1)[-1]
        if index.isdigit():
            found[int(index)].append(trial)
    return found


def _read_trial(trial: Path) -> tuple[dict, dict] | None:
    """``(traj_data, game)`` of a trial folder holding all three files, else None (missing or unreadable file)."""
    if not all((trial / name).is_file() for name in TRIAL_FILES):
        return None
    try:
        traj = json.loads((trial / "traj_data.json").read_text())
        game = json.loads((trial / "game.tw-pddl").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (traj, game) if isinstance(traj, dict) and isinstance(game, dict) else None


def _kept_task(trial: Path, split: str, seed: int, index: int, task_type: str, scenes: set[int],
               max_steps: int) -> GeneratedTask | None:
    """The task in ``trial`` if this run would have written it, else None (to be redrawn).

    Its ``agentrl`` block must name this ``GENERATOR_VERSION``, seed, split and index. The options are not stored
    in the files (adding them would change every file), so only what they imply is checked: the task type of the
    index, a scene the room-size filter allows, a walkthrough within ``max_steps``."""
    read = _read_trial(trial)
    if read is None:
        return None
    traj, game = read
    meta = traj.get("agentrl")
    wanted = {"generator_version": GENERATOR_VERSION, "seed": seed, "index": index, "split": split}
    if not isinstance(meta, dict) or {key: meta.get(key) for key in wanted} != wanted:
        return None
    scene = traj["scene"].get("scene_num") if isinstance(traj.get("scene"), dict) else None
    walkthrough = game.get("walkthrough")
    if traj.get("task_type") != task_type or not isinstance(scene, int) or scene not in scenes:
        return None
    if game.get("solvable") is not True:
        return None
    if not isinstance(walkthrough, list) or not 0 < len(walkthrough) <= max_steps:
        return None
    return GeneratedTask(trial, task_type, scene, len(walkthrough), reused=True)


def _remove_trial(trial: Path) -> None:
    """Deletes a trial folder, and its task folder once empty (no stray folder is left beside a redrawn task)."""
    shutil.rmtree(trial)
    if not any(trial.parent.iterdir()):
        trial.parent.rmdir()


def _resume(root: Path, split: str, seed: int, n: int, room_size: str, max_steps: int,
            task_types: tuple[str, ...], keep: bool = True) -> dict[int, GeneratedTask]:
    """The tasks of indices ``< n`` already on disk that a fresh run would write identically, by index.

    Every other trial folder of this seed and an index ``< n`` (stale version, missing file, a second copy, or all
    of them when ``keep`` is False) is deleted, because its redraw may land in another task folder; leftovers of a
    killed run's staging are deleted too. Indices ``>= n`` are left alone (they belong to a larger run)."""
    for staged in (root / STAGING).glob(f"{split}-trial_T{seed:06d}_*"):
        shutil.rmtree(staged)
    scenes: dict[str, set[int]] = {}
    kept: dict[int, GeneratedTask] = {}
    for index, trials in sorted(_trials_on_disk(root / "json_2.1.1" / split, seed).items()):
        if index >= n:
            continue
        task_type = task_types[index % len(task_types)]
        if keep and task_type not in scenes:
            scenes[task_type] = set(_scenes_for(task_type, split, room_size))
        for trial in sorted(trials):
            task = _kept_task(trial, split, seed, index, task_type, scenes[task_type], max_steps) if keep else None
            if task is not None and index not in kept:
                kept[index] = task
            else:
                _remove_trial(trial)
    return kept


def _remove_empty_staging(root: Path) -> None:
    """Removes ``root/.agentrl-staging`` once empty, so a resumed root has the same files and folders as a fresh one."""
    try:
        (root / STAGING).rmdir()
    except OSError:  # absent, or still holding another split's or seed's staged copy
        pass


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
             workers: int = 1, progress: bool = True, task_types: Sequence[str] = TASK_TYPES,
             resume: bool = True) -> list[GeneratedTask]:
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
        resume: keep the tasks a previous run of this seed already wrote completely with this
            ``GENERATOR_VERSION`` (they would come out identical); False redraws every index.

    Returns:
        One :class:`GeneratedTask` per task, in index order (kept ones included, with ``reused`` set).
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
    kept = _resume(root, split, seed, n, room_size, max_steps, task_types, keep=resume)
    jobs = [(root, split, seed, i, room_size, max_steps, task_types) for i in range(n) if i not in kept]
    pool = None
    if workers > 1 and jobs:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_generate_job, jobs)
    else:
        results = map(_generate_job, jobs)
    try:
        return _collect(n, kept, results, f"ALFWorld {split}" if progress else None)
    finally:
        if pool is not None:
            pool.terminate()
        _remove_empty_staging(root)


def _collect(n: int, kept: dict[int, GeneratedTask], results, title: str | None) -> list[GeneratedTask]:
    """The ``n`` tasks in index order: ``kept`` ones where given, else the next of ``results`` (drawn in index
    order); with a ``title``, a progress bar that starts at the kept count (so its time estimate is the new ones')."""
    fresh = iter(results)
    if title is None:
        return [kept[i] if i in kept else next(fresh) for i in range(n)]
    if kept:
        title += f" ({len(kept)} found already)"
    columns = (bars.TextColumn("[bold]{task.description}"), bars.BarColumn(),
               bars.MofNCompleteColumn(), bars.TimeElapsedColumn(), bars.TimeRemainingColumn(),
               bars.TextColumn("{task.fields[last]}"))
    tasks: list[GeneratedTask] = []
    with bars.Progress(*columns) as bar:
        job = bar.add_task(title, total=n, completed=len(kept), last="")
        for i in range(n):
            if i in kept:
                tasks.append(kept[i])
                continue
            task = next(fresh)
            tasks.append(task)
            bar.update(job, advance=1,
                       last=f"{task.task_type} FloorPlan{task.scene} ({task.expert_steps} expert steps)")
    return tasks
