"""Generate offline tasks: `agentrl gen alfworld|textworld --out DIR --n N --seed S`."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import ConfigError, option, require

KINDS = ("alfworld", "textworld")


@dataclass
class Config:
    """Options of `agentrl gen`."""

    kind: str = option("alfworld", help="what to generate: alfworld (ALFWorld tasks) or textworld (tw-make games)",
                       positional=True)
    out: str = option("", help="output folder (ALFWorld data root: tasks go to OUT/json_2.1.1/SPLIT/)")
    n: int = option(12, help="number of tasks/games")
    seed: int = option(0, help="base seed; the same seed gives identical files")
    split: str = option("train", help="alfworld: train, valid_seen or valid_unseen (unseen uses unseen rooms)")
    room_size: str = option("any", help="alfworld: any, small (<=8 receptacles), medium (9-20) or large (>20)")
    max_steps: int = option(50, help="alfworld: the expert must solve each task within this many steps")
    workers: int = option(1, help="alfworld: processes generating tasks in parallel")
    task_types: list[str] = option([], help="alfworld: task types to cycle through, comma-separated (default: all "
                                   "six; e.g. pick_and_place_simple,look_at_obj_in_light)")
    resume: bool = option(True, help="alfworld: keep the tasks an earlier run of this seed already wrote completely "
                          "(same files as redrawing them); --no-resume redraws every task")
    world_size: int = option(5, help="textworld: number of rooms")
    nb_objects: int = option(10, help="textworld: number of objects")
    quest_length: int = option(5, help="textworld: minimum number of actions of the quest")

    def __post_init__(self) -> None:
        require(self.kind in KINDS, f"`kind` must be one of {', '.join(KINDS)}, got {self.kind!r}")
        require(bool(self.out), "`out` is required (e.g. --out data/alfworld)")
        require(self.n >= 1, f"`n` must be >= 1, got {self.n}")
        require(self.split in ("train", "valid_seen", "valid_unseen"),
                f"`split` must be train, valid_seen or valid_unseen, got {self.split!r}")
        require(self.room_size in ("any", "small", "medium", "large"),
                f"`room_size` must be any, small, medium or large, got {self.room_size!r}")
        require(self.max_steps >= 1, f"`max_steps` must be >= 1, got {self.max_steps}")
        require(self.workers >= 1, f"`workers` must be >= 1, got {self.workers}")
        if self.task_types:
            from agentrl.envs.alfworld.pddl import TASK_TYPES

            unknown = [t for t in self.task_types if t not in TASK_TYPES]
            require(not unknown, f"`task_types`: unknown {', '.join(unknown)}; valid: {', '.join(TASK_TYPES)}")
        require(self.world_size >= 1 and self.nb_objects >= 1 and self.quest_length >= 1,
                "`world_size`, `nb_objects` and `quest_length` must be >= 1")


def run(cfg: Config) -> int:
    if cfg.kind == "alfworld":
        from agentrl.envs.alfworld.generator import GenerationError, generate

        types = {"task_types": cfg.task_types} if cfg.task_types else {}
        try:
            tasks = generate(cfg.out, cfg.split, cfg.n, seed=cfg.seed, room_size=cfg.room_size,
                             max_steps=cfg.max_steps, workers=cfg.workers, resume=cfg.resume, **types)
        except GenerationError as err:
            raise ConfigError(str(err)) from None
        kinds = sorted({t.task_type for t in tasks})
        reused = sum(t.reused for t in tasks)
        kept = f", {reused} of them already there" if reused else ""
        print(f"wrote {len(tasks)} ALFWorld {cfg.split} tasks ({len(kinds)} task types{kept}) "
              f"to {cfg.out}/json_2.1.1/{cfg.split}")
        return 0
    from agentrl.envs.textworld_env import generate_games

    paths = generate_games(cfg.out, cfg.n, seed=cfg.seed, world_size=cfg.world_size, nb_objects=cfg.nb_objects,
                           quest_length=cfg.quest_length)
    print(f"wrote {len(paths)} TextWorld games to {cfg.out}")
    return 0
