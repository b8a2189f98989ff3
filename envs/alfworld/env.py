"""``agentrl/ALFWorld-v0``: ALFWorld's text games as a Gymnasium environment.

``gymnasium.make("agentrl/ALFWorld-v0", data=ROOT, split="train")`` plays the tasks under
``ROOT/json_2.1.1/<split>/`` (the layout ``alfworld-download`` produces and ``agentrl gen alfworld`` writes)
through alfworld's real engine: TextWorld's PDDL environment with alfworld's demangler, ALFWorld >= 0.4 action
syntax ("move X to Y"), with repeated work cached (:mod:`agentrl.envs.alfworld.engine`). Tasks are filtered the
way ``AlfredTWEnv.collect_game_files`` filters them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym

from agentrl.envs.alfworld.engine import start_game
from agentrl.envs.alfworld.expert import HandCodedExpert
from agentrl.envs.alfworld.pddl import TASK_TYPES
from agentrl.envs.text import MAX_ACTION_CHARS, choose_task, clean_action, clean_observation, text_space

SPLIT_DIRS = {"train": "train", "valid_seen": "valid_seen", "valid_unseen": "valid_unseen",
              "eval_in_distribution": "valid_seen", "eval_out_of_distribution": "valid_unseen"}


def find_tasks(data: str | Path, split: str, task_types: list[str] | None = None) -> dict[str, Path]:
    """``task_id -> game.tw-pddl`` for the playable tasks of a split, with ``AlfredTWEnv``'s filters.

    Skips trials whose path contains "movable" or "Sliced", task types not asked for, trials without a game
    file, games without a ``solvable`` key and unsolvable games. ``task_id`` is ``<task folder>/<trial>``.
    """
    data = Path(os.path.expandvars(str(data))).expanduser()
    if split not in SPLIT_DIRS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_DIRS)}, got {split!r}")
    root = data / "json_2.1.1" / SPLIT_DIRS[split]
    if not root.is_dir():
        raise FileNotFoundError(
            f"no ALFWorld split at {root}: point `data` at a folder holding json_2.1.1/ "
            f"(run `agentrl gen alfworld --out {data} --split {split} --n 100`, or alfworld-download)"
        )
    wanted = set(task_types or TASK_TYPES)
    unknown = wanted - set(TASK_TYPES)
    if unknown:
        raise ValueError(f"unknown task types {sorted(unknown)}; valid: {', '.join(TASK_TYPES)}")
    tasks = {}
    for traj_file in sorted(root.glob("*/*/traj_data.json")):
        trial = traj_file.parent
        if "movable" in str(trial) or "Sliced" in str(trial):
            continue
        game_file = trial / "game.tw-pddl"
        if not game_file.is_file():
            continue
        try:
            traj = json.loads(traj_file.read_text())
            game = json.loads(game_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{traj_file.parent}: invalid JSON ({err})") from None
        if traj.get("task_type") not in wanted or not game.get("solvable", False):
            continue
        tasks[f"{trial.parent.name}/{trial.name}"] = game_file
    if not tasks:
        raise FileNotFoundError(f"no playable ALFWorld task under {root} (task types: {sorted(wanted)})")
    return tasks


class ALFWorldEnv(gym.Env):
    """One ALFWorld task per episode; text observations and actions.

    Observation: ALFWorld's text (the intro with the room and "Your task is to: ..." after reset, the engine's
    feedback after each step). Action: a command such as "go to countertop 1" or "move mug 1 to coffeemachine 1";
    anything the engine does not accept (unknown verbs, garbage, overlong strings) is a normal step answered
    "Nothing happens." with reward 0. Reward is 1.0 on the step that achieves the goal, else 0.0;
    ``terminated`` is True once won. Truncation comes from the ``TimeLimit`` set at registration (50 steps).

    ``info``: ``task_id``, ``task_type``, ``task`` (goal text), ``admissible_actions`` (sorted list),
    ``won``, ``expert_action`` (alfworld's hand-coded expert; only with ``expert=True``), ``gamefile``.

    Args:
        data: ALFWorld data root (holds ``json_2.1.1/``); ``$VARS`` and ``~`` are expanded.
        split: ``train``, ``valid_seen``, ``valid_unseen`` (or alfworld's ``eval_in/out_of_distribution``).
        task_types: keep only these task types (default: all six).
        expert: compute ``info["expert_action"]`` (costs the expert's bookkeeping every step).
        cache_dir: disk cache of translated games; ``"default"`` is ``~/.cache/agentrl/alfworld-engine`` (or
            ``$AGENTRL_ALFWORLD_CACHE``), None keeps the cache in memory only.
        render_mode: None or ``"ansi"`` (``render()`` returns the last observation).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, data: str | Path, split: str = "train", task_types: list[str] | None = None,
                 expert: bool = True, cache_dir: str | None = "default", render_mode: str | None = None) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.split = split
        self._games = find_tasks(data, split, task_types)
        self.task_ids: list[str] = sorted(self._games)
        self.observation_space = text_space(100_000)
        self.action_space = text_space(MAX_ACTION_CHARS)
        self._use_expert = expert
        self._cache_dir = cache_dir
        self._engine = None
        self._engine_task: str | None = None
        self._expert = None
        self._state: Any = None
        self._task_id = ""
        self._task_type = ""
        self._task = ""
        self._won = False
        self._last_obs = ""

    def _load(self, task_id: str) -> None:

        path = str(self._games[task_id])
        if self._engine is None:
            self._engine = start_game(path, facts=self._use_expert, cache_dir=self._cache_dir)
        elif self._engine_task != task_id:
            self._engine.load(path)
        self._engine_task = task_id
        traj = json.loads((self._games[task_id].parent / "traj_data.json").read_text())
        self._task_type = traj["task_type"]

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = options or {}
        task_id = choose_task(self.task_ids, options, self.np_random, f"split {self.split}: {len(self.task_ids)} tasks")
        self._load(task_id)
        self._task_id = task_id
        self._state = self._engine.reset()
        feedback = self._state["feedback"]
        self._task = feedback.split("Your task is to:", 1)[-1].strip() if "Your task is to:" in feedback else ""
        self._won = bool(self._state["won"])
        self._expert = None
        expert_action = None
        if self._use_expert:

            self._expert = HandCodedExpert(str(self._games[task_id]))
            expert_action = self._expert.start(self._state)
        self._last_obs = clean_observation(feedback)
        return self._last_obs, self._info(expert_action)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("ALFWorldEnv.step() called before reset()")
        command = clean_action(action).lower()
        was_won = self._won
        self._state, _, _ = self._engine.step(command)
        self._won = bool(self._state["won"])
        reward = 1.0 if self._won and not was_won else 0.0
        expert_action = None
        if self._expert is not None:
            expert_action = self._expert.next_action(self._state, command or "noop")
        self._last_obs = clean_observation(self._state["feedback"])
        return self._last_obs, reward, self._won, False, self._info(expert_action)

    def _info(self, expert_action: str | None) -> dict:
        info = {
            "task_id": self._task_id,
            "task_type": self._task_type,
            "task": self._task,
            "admissible_actions": list(self._state["admissible_commands"]),
            "won": self._won,
            "gamefile": str(self._games[self._task_id]),
        }
        if self._use_expert:
            info["expert_action"] = expert_action
        return info

    def render(self) -> str | None:
        return self._last_obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            self._engine_task = None
