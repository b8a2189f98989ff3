"""PDDL problems and ``game.tw-pddl`` files in ALFWorld's format.

A problem is standard PDDL over alfworld's shipped ``alfred.pddl`` domain. Names are ALFRED ids mangled the way
ALFWorld's problems spell them (``Mug|+00.32|+00.91|-02.71`` -> ``Mug_bar__plus_00_dot_32_bar_...``), so alfworld's
``AlfredDemangler`` turns them into "mug 1" for the player. Goals come from alfworld's own goal library
(``alfworld.gen.goal_library.gdict``), the same formulas ALFRED's generator used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from agentrl.envs.alfworld.rooms import INSTALL_HINT, Receptacle, alfworld_constants

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)

_MANGLE = (("|", "_bar_"), ("+", "_plus_"), ("-", "_minus_"), (".", "_dot_"), (",", "_comma_"))


def mangle(name: str) -> str:
    """ALFRED id -> PDDL name, the inverse of alfworld's demangler (``|`` -> ``_bar_``, ``+`` -> ``_plus_``...)."""
    for raw, safe in _MANGLE:
        name = name.replace(raw, safe)
    return name


@dataclass(frozen=True)
class Placement:
    """One object instance and the receptacle it starts in."""

    id: str
    cls: str
    receptacle: Receptacle


@dataclass
class Problem:
    """Everything a task's ``initial_state.pddl`` states."""

    name: str
    receptacles: list[Receptacle]
    objects: list[Placement]
    agent_location: str
    task_type: str
    object_target: str
    parent_target: str = ""
    toggle_target: str = ""
    opened: set[str] = field(default_factory=set)


def alfred_data_files() -> tuple[str, str]:
    """Texts of the shipped domain (``alfred.pddl``) and grammar (``alfred.twl2``)."""
    try:
        from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH
    except ImportError as err:  # pragma: no cover
        raise ImportError(INSTALL_HINT) from err
    return Path(ALFRED_PDDL_PATH).read_text(), Path(ALFRED_TWL2_PATH).read_text()


def goal_pddl(task_type: str, obj: str, recep: str, toggle: str) -> str:
    """The ``(:goal ...)`` block of a task, from alfworld's goal library (closes the ``define`` as ALFRED's does)."""
    import alfworld.gen.goal_library as glib

    return glib.gdict[task_type]["pddl"].replace("#", "-").format(obj=obj, recep=recep, toggle=toggle, mrecep="")


def task_description(task_type: str, obj: str, recep: str, toggle: str, template: int) -> str:
    """The goal sentence, from the goal library's templates ("put a clean mug in coffeemachine")."""
    import alfworld.gen.goal_library as glib

    templates = glib.gdict[task_type]["templates"]
    text = templates[template % len(templates)]
    return text.format(obj=obj.lower(), recep=recep.lower(), toggle=toggle.lower(), mrecep="")


def problem_pddl(problem: Problem) -> str:
    """Text of ``initial_state.pddl`` for ``problem``."""
    constants = alfworld_constants()
    actions = constants.VAL_ACTION_OBJECTS
    table = constants.VAL_RECEPTACLE_OBJECTS
    lamps = {"DeskLamp", "FloorLamp"}
    locations = sorted({r.location for r in problem.receptacles} | {problem.agent_location})
    otypes = sorted({o.cls for o in problem.objects})
    rtypes = sorted({r.cls for r in problem.receptacles})
    decl = ["agent1 - agent"]
    decl += [f"{t}Type - otype" for t in otypes]
    decl += [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{mangle(o.id)} - object" for o in problem.objects]
    decl += [f"{mangle(r.id)} - receptacle" for r in problem.receptacles]
    decl += [f"{mangle(loc)} - location" for loc in locations]
    init = [f"(atLocation agent1 {mangle(problem.agent_location)})"]
    for r in problem.receptacles:
        name = mangle(r.id)
        init.append(f"(receptacleType {name} {r.cls}Type)")
        init.append(f"(receptacleAtLocation {name} {mangle(r.location)})")
        if r.openable:
            init.append(f"(openable {name})")
            if r.id in problem.opened:
                init.append(f"(opened {name})")
    for o in problem.objects:
        name = mangle(o.id)
        init.append(f"(objectType {name} {o.cls}Type)")
        init.append(f"(inReceptacle {name} {mangle(o.receptacle.id)})")
        init.append(f"(objectAtLocation {name} {mangle(o.receptacle.location)})")
        if o.cls in lamps:
            init.append(f"(toggleable {name})")
            continue
        init.append(f"(pickupable {name})")
        if o.cls in constants.MOVABLE_RECEPTACLES_SET:
            init.append(f"(isReceptacleObject {name})")
        for prop, key in (("cleanable", "Cleanable"), ("heatable", "Heatable"), ("coolable", "Coolable")):
            if o.cls in actions[key]:
                init.append(f"({prop} {name})")
    for rt in rtypes:
        for ot in otypes:
            if ot in table.get(rt, ()):
                init.append(f"(canContain {rt}Type {ot}Type)")
    goal = goal_pddl(problem.task_type, problem.object_target, problem.parent_target, problem.toggle_target)
    indent = "\n        "
    return (
        f"(define (problem {problem.name})\n    (:domain alfred)\n    (:objects{indent}"
        + indent.join(decl)
        + f"\n    )\n    (:init{indent}"
        + indent.join(init)
        + "\n    )\n"
        + goal.strip("\n")
        + "\n"
    )


def game_json(problem_text: str, task_desc: str, walkthrough: list[str] | None, solvable: bool = True) -> dict:
    """The ``game.tw-pddl`` mapping: domain, grammar with the task line filled, problem, solvability."""
    domain, grammar = alfred_data_files()
    return {
        "pddl_domain": domain,
        "grammar": grammar.replace("UNKNOWN GOAL", task_desc),
        "pddl_problem": problem_text,
        "solvable": solvable,
        "walkthrough": walkthrough,
    }


def write_json(path: Path, data: dict) -> None:
    """Writes JSON with sorted keys so equal data gives byte-identical files."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
