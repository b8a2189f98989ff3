"""The cached ``PddlEnv`` of :mod:`agentrl.envs.alfworld.engine`; this module needs textworld, so the engine imports
it only when a game starts. The engine's docstring says what is cached and why it is safe."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from agentrl.envs.alfworld.engine import _TEMPLATE_WORDS, _textworld, prepare_game
from agentrl.envs.alfworld.grammar import derive, game_logic

textworld = _textworld()  # raises the install hint when textworld is missing
from textworld.core import GameState  # noqa: E402
from textworld.envs.pddl import logic as pddl_logic  # noqa: E402
from textworld.envs.pddl.pddl import PddlEnv  # noqa: E402


class CachedPddlEnv(PddlEnv):
    """``PddlEnv`` that keeps translations, command texts and parsed grammar strings (see module doc)."""

    cache_dir: Path | None = None
    cache_write = True

    def load(self, filename_or_data):
        if isinstance(filename_or_data, str):
            with open(filename_or_data) as f:
                data = json.load(f)
            self._game_file = filename_or_data
        else:
            data, self._game_file = filename_or_data, None
        self._game_data = data
        self.walkthrough = data.get("walkthrough")
        self._logic = game_logic(data["pddl_domain"], data["grammar"])
        self._translation = prepare_game(data["pddl_domain"], data["pddl_problem"], self.cache_dir,
                                         self.cache_write)
        self._pddl_state = self._fresh_state()
        self._untouched = True  # the state just built is still the initial one: the first reset reuses it
        self._entity_infos = self._get_entity_infos()
        self._commands: dict[tuple, str] = {}
        self._readable: dict[Any, Any] = {}
        self._templates = sorted({a.template for a in self._logic.actions.values()})

    def _fresh_state(self):
        """``PddlState(lib, problem, logic)`` without translating again: same fields, same facts."""
        game = self._translation
        state = pddl_logic.PddlState.__new__(pddl_logic.PddlState)
        state._facts, state._vars_by_name = defaultdict(set), {}
        state._vars_by_type, state._var_counts = defaultdict(set), Counter()
        state._logic, state.downward_lib = self._logic, self.downward_lib
        state.pddl_problem, state.task, state.sas = self._game_data["pddl_problem"], None, game.sas
        state._actions = game.action_specs  # what all_applicable_actions() reads: .parameters[i].name/.type_name
        for name, supertypes in game.types:
            try:
                self._logic.types.add(textworld.logic.Type(name, supertypes))
            except ValueError:
                pass
        self.downward_lib.load_sas(game.sas.encode("utf-8"))
        state.name2type = dict(game.objects)
        state.add_facts(game.facts)
        size = self.downward_lib.get_state_size()
        atoms = (pddl_logic.Atom * size)()
        self.downward_lib.get_state(atoms)
        state.add_facts([f for f in (a.get_fact(state.name2type) for a in atoms) if not f.is_negation])
        return state

    def _command(self, action) -> str:
        template = self._logic.actions[action.name].template
        names = {ph.name: var.name for ph, var in action.mapping.items()}
        used = _TEMPLATE_WORDS.get(template)
        if used is None:
            used = _TEMPLATE_WORDS[template] = frozenset(re.findall(r"[A-Za-z_]\w*", template))
        # the text depends only on the variables the template mentions ("go to X" not on where you stand)
        key = (action.name, *sorted((k, v) for k, v in names.items() if k in used))
        command = self._commands.get(key)
        if command is None:
            if "[" not in template and "#" not in template:  # plain "take {o} from {r}": fill in the names
                command = re.sub(r"\{(\w+)\}", lambda m: self._entity_infos[names[m.group(1)]].name, template)
            else:  # conditional/list templates ("go to [{r.name | ...}]") go through the grammar
                variables = {ph.name: self._entity_infos[var.name] for ph, var in action.mapping.items()}
                context = self._context(variables, action.mapping)
                action.command_template = derive(self._logic.grammar, action.command_template, context)
                command = action.format_command({k: info.name for k, info in self._entity_infos.items()})
            self._commands[key] = command
        return command

    def _gather_infos(self):
        state = self.state
        state["command_templates"] = self._templates
        state["won"] = self._pddl_state.check_goal()
        state["lost"] = False
        state["_entity_infos"] = self._entity_infos
        state["_facts"] = list(self._pddl_state.facts)
        if self.request_infos.facts:
            readable = self._readable
            out = []
            for fact in state["_facts"]:
                if fact not in readable:
                    readable[fact] = self._get_human_readable_fact(fact)
                out.append(readable[fact])
            state["facts"] = out
        state["last_action"] = None
        state["_last_action"] = self._last_action
        state["_valid_actions"] = list(self._pddl_state.all_applicable_actions())
        state["_valid_commands"] = [self._command(a) for a in state["_valid_actions"]]
        state["admissible_commands"] = sorted(set(state["_valid_commands"]))
        if self.request_infos.moves:
            state["moves"] = self._moves

    def _context(self, variables: dict, mapping: dict) -> dict:
        return {
            "state": self._pddl_state,
            "facts": list(self._pddl_state.facts),
            "variables": variables,
            "mapping": mapping,
            "entity_infos": self._entity_infos,
        }

    def reset(self):
        if not getattr(self, "_untouched", False):
            self._pddl_state = self._fresh_state()
        self._untouched = False
        self.prev_state = None
        self.state = GameState()
        self._last_action = None
        self._moves = 0
        self.state.feedback = derive(self._logic.grammar, "#intro#", self._context({}, {}))
        self.state.raw = self.state.feedback
        self._gather_infos()
        return self.state

    def step(self, command: str):
        command = command.strip()
        self.prev_state = self.state
        self.state = GameState()
        self.state.last_command = command
        self._last_action = None
        try:
            idx = self.prev_state["_valid_commands"].index(command)
        except ValueError:
            self.state.feedback = "Nothing happens."  # same as PddlEnv: unknown command, no state change
        else:
            self._last_action = action = self.prev_state["_valid_actions"][idx]
            self._pddl_state.apply(action)
            variables = {ph.name: self._entity_infos[var.name] for ph, var in action.mapping.items()}
            self.state.feedback = derive(
                self._logic.grammar, action.feedback_rule, self._context(variables, action.mapping)
            )
            self._moves += 1
        self.state.raw = self.state.feedback
        self._gather_infos()
        self.state["score"] = 1 if self.state["won"] else 0
        self.state["done"] = self.state["won"] or self.state["lost"]
        return self.state, self.state["score"], self.state["done"]
