"""Rooms for generated ALFWorld tasks, built from the AI2-THOR floor plans that alfworld ships.

alfworld 0.4.2 ships ``alfworld/gen/layouts/FloorPlan<N>-openable.json`` (every interactable receptacle of a
scene with the pose the agent stands at to use it) and ``FloorPlan<N>-objects.json`` (the object classes present
in the scene). A :class:`Room` keeps those receptacles, adds the fixed receptacles the scene lists but the pose
file lacks (coffee machines, stove burners, garbage cans, toilets, ...), and knows which object classes may
appear. Which object fits in which receptacle, and which objects can be cleaned, heated, cooled or toggled,
come from ALFRED's own tables in ``alfworld.gen.constants`` (``VAL_RECEPTACLE_OBJECTS``, ``VAL_ACTION_OBJECTS``).

Scenes follow ALFRED's split: train/valid_seen rooms come from ``TRAIN_SCENE_NUMBERS`` and valid_unseen rooms
from ``TEST_SCENE_NUMBERS``, so unseen rooms are layouts no training task ever used.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

INSTALL_HINT = 'ALFWorld support needs the alfworld extra: pip install "agentrl[alfworld]"'

SCENE_KINDS = {"Kitchen": range(1, 31), "LivingRoom": range(201, 231), "Bedroom": range(301, 331),
               "Bathroom": range(401, 431)}

# Receptacle classes that are part of the room (not carried around); ALFRED's movable receptacles (mug, bowl,
# plate, ...) are objects here, as in ALFWorld's text games.
FIXED_RECEPTACLES = frozenset({
    "ArmChair", "BathtubBasin", "Bed", "Cabinet", "Cart", "CoffeeMachine", "CoffeeTable", "CounterTop", "Desk",
    "DiningTable", "Drawer", "Dresser", "Fridge", "GarbageCan", "HandTowelHolder", "LaundryHamper", "Microwave",
    "Ottoman", "Safe", "Shelf", "SideTable", "SinkBasin", "Sofa", "StoveBurner", "TVStand", "Toaster", "Toilet",
    "ToiletPaperHanger", "TowelHolder",
})
LAMPS = ("DeskLamp", "FloorLamp")
LAMP_RECEPTACLES = ("Desk", "SideTable", "Dresser", "Shelf", "CoffeeTable", "DiningTable", "TVStand")
# Copies of a fixed receptacle the pose file may lack (a kitchen has four burners).
EXTRA_COUNT = {"StoveBurner": 4}


def alfworld_constants() -> ModuleType:
    """``alfworld.gen.constants`` (ALFRED's object tables), with an install hint when alfworld is missing."""
    try:
        import alfworld.gen.constants as constants
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from err
    return constants


def layouts_dir() -> Path:
    """Folder of the FloorPlan layout files inside the installed alfworld package."""
    constants = alfworld_constants()
    return Path(constants.__file__).parent / "layouts"


def scene_kind(scene: int) -> str:
    """``"Kitchen"``, ``"LivingRoom"``, ``"Bedroom"`` or ``"Bathroom"`` for an ALFRED scene number."""
    for kind, numbers in SCENE_KINDS.items():
        if scene in numbers:
            return kind
    raise ValueError(f"scene {scene} is not an ALFRED floor plan number")


def split_scenes(split: str) -> list[int]:
    """Scene numbers a split may use: ALFRED's train scenes for train/valid_seen, test scenes for valid_unseen."""
    constants = alfworld_constants()
    if split in ("train", "valid_seen"):
        scenes = constants.TRAIN_SCENE_NUMBERS
    elif split == "valid_unseen":
        scenes = constants.TEST_SCENE_NUMBERS
    else:
        raise ValueError(f"unknown split {split!r}; expected train, valid_seen or valid_unseen")
    folder = layouts_dir()
    return sorted(s for s in scenes if (folder / f"FloorPlan{s}-openable.json").is_file())


@dataclass(frozen=True)
class Receptacle:
    """One receptacle instance: ALFRED id (``Cabinet|+00.68|+00.50|-02.20``), class and the agent's pose there."""

    id: str
    cls: str
    location: str  # ``loc|x|z|rotation|horizon`` as in ALFWorld's problems

    @property
    def openable(self) -> bool:
        return self.cls in alfworld_constants().OPENABLE_CLASS_SET


@dataclass(frozen=True)
class Room:
    """A scene: its receptacles and the object classes that may be placed in it."""

    scene: int
    kind: str
    receptacles: tuple[Receptacle, ...]
    object_classes: tuple[str, ...]

    def receptacle_classes(self) -> set[str]:
        return {r.cls for r in self.receptacles}

    def receptacles_for(self, obj_cls: str) -> list[Receptacle]:
        """Receptacles an object of ``obj_cls`` may sit in (ALFRED's ``VAL_RECEPTACLE_OBJECTS``)."""
        if obj_cls in LAMPS:
            return [r for r in self.receptacles if r.cls in LAMP_RECEPTACLES]
        table = alfworld_constants().VAL_RECEPTACLE_OBJECTS
        return [r for r in self.receptacles if obj_cls in table.get(r.cls, ())]


def _location(pose: list[float]) -> str:
    x, z, rotation, horizon = pose
    return f"loc|{round(x / 0.25)}|{round(z / 0.25)}|{round(rotation / 90) % 4}|{round(horizon)}"


def _receptacle_class(instance_id: str) -> str:
    parts = instance_id.split("|")
    return parts[-1] if len(parts) > 4 else parts[0]  # ``Sink|x|y|z|SinkBasin`` is a SinkBasin


@functools.lru_cache(maxsize=256)
def load_room(scene: int) -> Room:
    """Reads FloorPlan<scene> from alfworld's layouts and completes its receptacle list.

    Receptacles missing from the pose file get a pose drawn from a generator seeded by the scene number, so the
    same scene always has the same layout.
    """
    folder = layouts_dir()
    poses = json.loads((folder / f"FloorPlan{scene}-openable.json").read_text())
    present = json.loads((folder / f"FloorPlan{scene}-objects.json").read_text())
    receptacles = []
    for instance_id, pose in sorted(poses.items()):
        cls = _receptacle_class(instance_id)
        if cls in FIXED_RECEPTACLES:
            receptacles.append(Receptacle(instance_id, cls, _location(pose)))
    have = {r.cls for r in receptacles}
    rng = random.Random(f"floorplan-{scene}")
    for cls in sorted(set(present) & FIXED_RECEPTACLES - have):
        for _ in range(EXTRA_COUNT.get(cls, 1)):
            x, y, z = (rng.uniform(-3, 3) for _ in range(3))
            instance_id = f"{cls}|{x:+06.2f}|{y:+06.2f}|{z:+06.2f}"
            pose = [rng.randint(-12, 12) * 0.25, rng.randint(-12, 12) * 0.25, 90 * rng.randint(0, 3), 30]
            receptacles.append(Receptacle(instance_id, cls, _location(pose)))
    constants = alfworld_constants()
    placeable = set().union(*constants.VAL_RECEPTACLE_OBJECTS.values())
    objects = sorted(
        c for c in present
        if (c in placeable and c not in FIXED_RECEPTACLES and "Sliced" not in c) or c in LAMPS
    )
    return Room(scene, scene_kind(scene), tuple(receptacles), tuple(objects))
