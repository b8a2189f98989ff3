"""alfworld's hand-coded expert (``handcoded_expert_tw.HandCodedTWAgent``), made deterministic.

The expert is the one ``AlfredTWEnv`` uses for DAgger (not the per-step planner, which costs ~0.3 s a step).
It is driven exactly like alfworld's ``AlfredExpert`` wrapper: after reset it observes the intro and proposes
"look"; after every step it is told the command actually played and returns its next command, which is kept
only if admissible ("look" otherwise). It breaks ties with the global ``random`` module; here each expert owns a
private random state (seeded from the trial folder name), swapped in around its calls, so the same task always gets the
same expert actions and the caller's global random state is left alone.

One fix to alfworld's expert: its state tracker pops the held object when the last command contains "put"
(ALFWorld 2.0's verb), but the TextWorld engine's command, and the one the expert itself proposes, is "move X to
Y". Told "move ...", the expert never lets go of what it placed: on a pick-two task it then proposes moving the
*first* object again while holding the second (not admissible, so "look"), and wanders until its random
fallbacks happen on the right command -- 30+ extra steps in the demonstrations, or a failed task. So each
played "move X to Y" is reported to it as "put X in/on Y" (:func:`tracked_command`).
"""

from __future__ import annotations

import os
import random
import re
import zlib
from typing import Any

from agentrl.envs.alfworld.rooms import INSTALL_HINT

# The only fact predicates the TW expert reads (``handcoded_expert_tw.py``: "holds agent X", "inreceptacle X Y",
# "ishot/iscool/isclean X", all exact membership tests); it rebuilds and de-numbers every fact string each step,
# so handing it just these is the same decision at a fraction of the cost.
EXPERT_PREDICATES = frozenset({"holds", "inreceptacle", "ishot", "iscool", "isclean"})


def tracked_command(command: str) -> str:
    """``command`` as alfworld's expert tracks it: "move X to Y" becomes "put X in/on Y" (module docstring)."""
    match = re.fullmatch(r"move (.+?) to (.+)", command.strip())
    return f"put {match[1]} in/on {match[2]}" if match else command


class HandCodedExpert:
    """Next-action oracle for one episode of one ALFWorld game."""

    def __init__(self, gamefile: str) -> None:
        try:
            from alfworld.agents.expert import HandCodedTWAgent
        except ImportError as err:  # pragma: no cover
            raise ImportError(INSTALL_HINT) from err
        self._agent = HandCodedTWAgent(max_steps=200)
        # Seeded by the trial folder name: the generator's verification run and every later episode of the
        # task then take the very same expert actions.
        trial = os.path.basename(os.path.dirname(os.path.abspath(gamefile)))
        self._rng_state = random.Random(zlib.crc32(trial.encode())).getstate()
        self._call(self._agent.reset, gamefile)
        self.failed = False
        self.rejected = 0  # proposals that were not admissible (replaced by "look")

    def _call(self, fn, *args):
        outer = random.getstate()
        random.setstate(self._rng_state)
        try:
            return fn(*args)
        finally:
            self._rng_state = random.getstate()
            random.setstate(outer)

    def start(self, state: Any) -> str:
        """Observes the intro; returns the first action ("look", as alfworld's expert wrapper does)."""
        self._call(self._agent.observe, state["feedback"])
        return "look"

    def next_action(self, state: Any, last_command: str) -> str:
        """The expert's next command after ``last_command`` led to ``state`` ("look" when it has none)."""
        if self.failed:
            return "look"
        view = dict(state)
        view["facts"] = [f for f in state["facts"] if f.name in EXPERT_PREDICATES]
        try:
            action = self._call(self._agent.act, view, 0, state["won"], tracked_command(last_command))
        except Exception:  # HandCodedAgentTimeout/Failed, or its heuristics tripping on an odd state
            self.failed = True
            return "look"
        if action in state["admissible_commands"]:
            return action
        self.rejected += 1
        return "look"
