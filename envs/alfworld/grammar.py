"""TextWorld's game grammar (``GameLogic``) and text derivation with every parse done once per process.

Every ALFWorld game file carries alfworld's whole grammar (``alfred.twl2``, ~13 KB) with one line filled in per
task (``"Your task is to: put a clean mug in coffeemachine."``), so a cache keyed by the grammar text misses on
every new task, and TextWorld parses the text with tatsu each time: the document, then each of its ~100 rule
texts, then, on every derivation, every rule condition and ``{x | given}`` query it meets. Here:

* :func:`game_logic` parses the document once per *skeleton*: the text with its task line replaced by a
  placeholder (:func:`split_task`). The task text is substituted back into the token that held the placeholder
  before the token is read, so the result is what parsing the real text gives (see :func:`split_task` for why);
  a text without exactly one such line, or whose placeholder does not land in one string token, is parsed whole.
* Rule texts, conditions and queries are parsed once per distinct string (they are pure functions of it; the
  parsed rules are never mutated: derivations copy a rule's symbols before giving them a context).
* :func:`derive` is ``ContextSensitiveGrammar.derive`` with those cached parses and with contexts copied one
  level deep (``dict`` copies of ``variables``/``mapping``) instead of ``deepcopy``: a context's dicts are the
  only things a derivation changes (``dict.update`` in queries); the entity infos, placeholders and variables
  they hold are only read.

``tests/envs/test_alfworld_grammar.py`` checks the logic equals TextWorld's own parse, that a new task reuses the
parsed document, and that generated files are byte-identical to the pre-cache generator's.
"""

from __future__ import annotations

import copy
import json
import re
from collections import OrderedDict
from typing import Any

_LOGICS: OrderedDict[tuple[str, str], Any] = OrderedDict()  # (domain, grammar text) -> GameLogic
_DOCUMENTS: OrderedDict[str, Any] = OrderedDict()  # grammar skeleton -> tatsu model of the document
_MEMORY_CACHE_SIZE = 64
_RULES: dict[str, list] = {}  # rule rhs text -> parsed symbols
_QUERIES: dict[str, Any] = {}  # condition / given text -> textworld Rule
_PARSED: dict[str, list] = {}  # derivation start text -> parsed symbols
PLACEHOLDER = "@@agentrl-task@@"
# The task line as alfworld's ``add_task_to_grammar`` fills it, inside a JSON string of a grammar block.
TASK_LINE = re.compile(r'Your task is to: ([^"\\\x00-\x1f]*)"')


def _lru_put(cache: OrderedDict, key: Any, value: Any) -> Any:
    cache[key] = value
    while len(cache) > _MEMORY_CACHE_SIZE:
        cache.popitem(last=False)
    return value


def split_task(grammar: str) -> tuple[str, str] | None:
    """``(skeleton, task)``: the grammar with its one task line's text replaced by :data:`PLACEHOLDER`, or None.

    Why parsing the skeleton and substituting back is exact: the task text and the placeholder contain no ``"``,
    backslash or control character, so whichever string token (``"..."`` or a triple-quoted block) holds the
    placeholder ends at the same quote with either text in it, and no other token changes; the only other
    difference, token positions (tatsu's parseinfo), is not read by ``GameLogic``.
    """
    matches = list(TASK_LINE.finditer(grammar))
    if len(matches) != 1 or PLACEHOLDER in grammar:
        return None
    start, end = matches[0].span(1)
    return grammar[:start] + PLACEHOLDER + grammar[end:], grammar[start:end]


def parse_rule(rhs: str) -> list:
    """A rule text parsed into grammar symbols (``textgen._parse_and_convert(rhs, rule_name="symbols")``), once."""
    symbols = _RULES.get(rhs)
    if symbols is None:
        from textworld.envs.pddl import textgen

        symbols = _RULES[rhs] = textgen._parse_and_convert(rhs, rule_name="symbols")
    return symbols


def parse_query(expression: str) -> Any:
    """``Rule.parse_conjunctive_query(expression)``, once per expression."""
    rule = _QUERIES.get(expression)
    if rule is None:
        from textworld.logic import Rule

        rule = _QUERIES[expression] = Rule.parse_conjunctive_query(expression)
    return rule


def parse_grammar(text: str) -> Any:
    """``ContextSensitiveGrammar.parse(text)`` with every rule text parsed once per process."""
    from textworld.envs.pddl import textgen

    grammar = textgen.ContextSensitiveGrammar()
    for name, rules in json.loads(text).items():
        for rule in rules:
            grammar.add_rule(textgen.ProductionRule(lhs=name, rhs=parse_rule(rule["rhs"]),
                                                    weight=rule.get("weight", 1), condition=rule.get("condition", "")))
    return grammar


def _converter(task: str | None):
    """textworld's ``_ModelConverter`` that puts ``task`` back for the placeholder and parses rules once."""
    from textworld.envs.pddl import logic as pddl_logic
    from textworld.envs.pddl.logic import model as logic_model

    class Converter(pddl_logic._ModelConverter):
        replaced = 0

        def _fill(self, string: str) -> str:
            if task is not None and PLACEHOLDER in string:
                self.replaced += string.count(PLACEHOLDER)
                string = string.replace(PLACEHOLDER, task)
            return string

        def _unescape(self, string):
            return super()._unescape(self._fill(string))

        def _unescape_block(self, string):
            return super()._unescape_block(self._fill(string))

        def walk_PddlDocumentNode(self, node):  # textworld's, with parse_grammar for ContextSensitiveGrammar.parse
            actions, grammar = {}, {}
            for part in node.parts:
                if isinstance(part, logic_model.ActionTypeNode):
                    action = self.walk(part)
                    actions[action.name.lower()] = action
                    lines = action.grammar.split("\n")
                    grammar.update(json.loads("\n".join(line for line in lines if not line.lstrip().startswith("#"))))
                elif isinstance(part, logic_model.ActionGrammarNode):
                    grammar.update(json.loads(self._unescape_block(part.code)))
            return actions, parse_grammar(json.dumps(grammar))

    return Converter()


def _document(text: str) -> Any:
    model = _DOCUMENTS.get(text)
    if model is None:
        from textworld.envs.pddl import logic as pddl_logic

        model = _lru_put(_DOCUMENTS, text, pddl_logic._PARSER.parse(text, rule_name="pddlStart"))
    _DOCUMENTS.move_to_end(text)
    return model


def _build_logic(domain: str, grammar: str) -> Any:
    import textworld.logic
    from textworld.envs.pddl import logic as pddl_logic

    split = split_task(grammar)
    converted = None
    if split is not None:
        converter = _converter(split[1])
        converted = converter.walk(_document(split[0]))
        if converter.replaced != 1:  # the placeholder was not inside one string token: parse the real text
            converted = None
    if converted is None:
        converted = _converter(None).walk(_document(grammar))
    logic = pddl_logic.GameLogic.__new__(pddl_logic.GameLogic)  # GameLogic.__init__'s fields, parsed as above
    logic.domain, logic.grammar = domain, pddl_logic.ContextSensitiveGrammar()
    logic.actions, logic.types = {}, textworld.logic.TypeHierarchy()
    logic.actions.update(converted[0])
    logic.grammar.update(converted[1])
    return logic


def game_logic(domain: str, grammar: str) -> Any:
    """The game's ``GameLogic`` (equal to ``GameLogic(domain=domain, grammar=grammar)``), parsed as the module says.

    Kept per distinct text (LRU): a game's types are added to its logic when it starts, so each text has its own.
    """
    key = (domain, grammar)
    logic = _LOGICS.get(key)
    if logic is None:
        logic = _lru_put(_LOGICS, key, _build_logic(domain, grammar))
    _LOGICS.move_to_end(key)
    return logic


def _copy_context(context: dict) -> dict:
    """``textgen.copy_context`` one level deep (the module docstring says why that is enough)."""
    return {"state": context["state"], "facts": context["facts"], "variables": dict(context["variables"]),
            "mapping": dict(context["mapping"]), "entity_infos": context["entity_infos"]}


def _replace(grammar: Any, start: Any) -> list:
    """``ContextSensitiveGrammar.replace``: the first applicable rule's symbols, each with a copy of the context."""
    from textworld.envs.pddl import textgen

    rules = grammar._rules.get(str(start))
    if not rules:
        raise textgen.CSGUnknownSymbolError(start)
    state, mapping = start.context["state"], start.context["mapping"]
    applicable = [r for r in rules if not r.condition
                  or next(iter(state.all_assignments(parse_query(r.condition), mapping)), None) is not None]
    symbols = copy.deepcopy(applicable[0].rhs)  # IndexError when none applies, as in TextWorld
    for symbol in symbols:
        symbol.context = _copy_context(start.context)
    return symbols


def _conditional(symbol: Any) -> list:
    """``ConditionalSymbol.derive``: the expression once per assignment of ``given`` (once if there is none)."""
    if len(symbol.context) == 0:
        raise ValueError("Empty context")
    context = _copy_context(symbol.context)
    contexts = [context]
    if symbol.given:
        contexts = []
        for mapping in context["state"].all_assignments(parse_query(symbol.given), context["mapping"]):
            found = _copy_context(context)
            found["variables"].update({ph.name: found["entity_infos"][var.name] for ph, var in mapping.items()})
            found["mapping"].update(mapping)
            contexts.append(found)
    out = []
    for found in contexts:
        expression = copy.deepcopy(symbol.expression)
        expression.context = _copy_context(found)
        out.append(expression)
    return out


def derive(grammar: Any, start: str, context: dict) -> str:
    """``ContextSensitiveGrammar.derive(start, context)``: same algorithm, parses cached, light context copies."""
    from textworld.envs.pddl import textgen

    if start not in _PARSED:
        _PARSED[start] = textgen._parse_and_convert(start, rule_name="symbols")
    derivation = copy.deepcopy(_PARSED[start])[::-1]
    for symbol in derivation:
        symbol.context = _copy_context(context)
    derived = []
    while derivation:
        symbol = derivation.pop()
        if isinstance(symbol, textgen.TerminalSymbol):
            derived.append(symbol)
        elif isinstance(symbol, textgen.NonterminalSymbol):
            derivation += _replace(grammar, symbol)[::-1]
        elif isinstance(symbol, textgen.ConditionalSymbol):
            derivation += _conditional(symbol)[::-1]
        elif isinstance(symbol, textgen.ListSymbol):  # ListSymbol.derive, through _conditional
            symbol.symbol.context = symbol.context
            derivation += textgen.display_list(_conditional(symbol.symbol), symbol.context)[::-1]
        elif isinstance(symbol, textgen.EvalSymbol):
            derivation += symbol.derive()[::-1]
        else:  # pragma: no cover - the grammar has no other symbol kinds
            raise NotImplementedError(f"unknown grammar symbol {type(symbol)}")
    return "".join(map(str, derived))
