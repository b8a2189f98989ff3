"""ALFWorld's text engine (TextWorld's ``PddlEnv``) with the work it repeats every step and reset cached.

The rules are untouched: every state change goes through fast-downward's operators exactly as in
``textworld.envs.PddlEnv``, names through alfworld's ``AlfredDemangler``, feedback through the same grammar.
What is cached, and why it is safe:

* PDDL -> SAS translation (``fast_downward.pddl2sas``, ~0.35 s on a 30-receptacle room) and the grammar parse run
  once per game and are kept in memory (LRU) and on disk (:func:`default_cache_dir`; a new process loads a game
  it has seen in ~10 ms); ``reset`` reloads the kept SAS into the planner library instead of translating again,
  and skips the second, "optimised" translation that only the per-step planner (``policy_commands``) uses.
* The command text of an applicable operator ("take mug 1 from countertop 2") depends only on the arguments its
  template mentions (the templates query static facts only), so it is made once per game and per such argument
  tuple; plain templates ("take {o} from {r}") are filled in directly instead of through the grammar parser.
* The grammar (``GameLogic``) is parsed once per process, not once per task, and its rule texts, conditions and
  feedback strings once instead of on every derivation (:mod:`agentrl.envs.alfworld.grammar`).
* Readable facts ("inreceptacle mug 1 countertop 2") are converted once per raw fact.

``tests/envs/test_alfworld.py::test_engine_matches_textworld`` checks observations, admissible commands and
``won`` against the uncached ``PddlEnv`` step by step.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from agentrl.envs.alfworld.rooms import INSTALL_HINT

_GAMES: OrderedDict[str, Translation] = OrderedDict()
_MEMORY_CACHE_SIZE = 64
_TEMPLATE_WORDS: dict[str, frozenset[str]] = {}
CACHE_ENV_VAR = "AGENTRL_ALFWORLD_CACHE"
CACHE_FORMAT = 1


class _Param(NamedTuple):
    name: str
    type_name: str


class _ActionSpec(NamedTuple):
    name: str
    parameters: list[_Param]


@dataclass
class Translation:
    """What ``PddlState`` needs from fast-downward's translation, as plain data plus rebuilt facts.

    Stored on disk as JSON (not pickle): textworld's ``Variable``/``Proposition`` cache their ``hash()`` in a slot,
    and string hashes differ between processes, so pickled facts would silently break set lookups in another
    process. The objects are rebuilt from strings after loading instead.
    """

    sas: str
    objects: dict[str, str]  # name -> type
    types: list[tuple[str, list[str]]]  # (type, supertypes)
    actions: dict[str, list[tuple[str, str]]]  # operator schema -> [(parameter, type)]
    init: list[tuple[str, list[tuple[str, str]]]]  # initial facts: (predicate, [(argument, type)])
    facts: list = field(default_factory=list, repr=False)  # textworld Propositions, rebuilt per process
    action_specs: dict[str, _ActionSpec] = field(default_factory=dict, repr=False)

    def build(self) -> Translation:
        from textworld.logic import Proposition, Variable

        self.facts = [Proposition(name, [Variable(a, t) for a, t in args]) for name, args in self.init]
        self.action_specs = {
            name: _ActionSpec(name, [_Param(p, t) for p, t in params]) for name, params in self.actions.items()
        }
        return self

    def to_json(self) -> str:
        data = {"format": CACHE_FORMAT, "sas": self.sas, "objects": self.objects, "types": self.types,
                "actions": self.actions, "init": self.init}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Translation:
        data = json.loads(text)
        if data.get("format") != CACHE_FORMAT:
            raise ValueError("cache format")
        return cls(data["sas"], data["objects"], [tuple(t) for t in data["types"]],
                   {k: [tuple(p) for p in v] for k, v in data["actions"].items()},
                   [(n, [tuple(a) for a in args]) for n, args in data["init"]]).build()


def _textworld():
    try:
        import textworld
        import textworld.envs.pddl.pddl  # noqa: F401
    except ImportError as err:  # pragma: no cover
        raise ImportError(INSTALL_HINT) from err
    return textworld


def default_cache_dir() -> Path | None:
    """Disk cache of translated games.

    ``$AGENTRL_ALFWORLD_CACHE`` ("off" disables it), else ``~/.cache/agentrl/alfworld-engine``. Entries are
    zlib-compressed JSON (~20-100 KB a game) named by the SHA-256 of the game's domain and problem, so an edited
    game never hits a stale entry. Delete the folder to clear it.
    """
    value = os.environ.get(CACHE_ENV_VAR)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none") else Path(value).expanduser()
    return Path.home() / ".cache" / "agentrl" / "alfworld-engine"


def _translate(domain: str, problem: str) -> Translation:
    """fast-downward's PDDL -> SAS translation of a problem, with the initial facts textworld would derive."""
    import fast_downward

    task, sas = fast_downward.pddl2sas(domain, problem, verbose=False)
    objects = {o.name: o.type_name for o in task.objects}
    init = []
    for atom in task.init:  # same conversion as textworld's PddlState.__init__
        if isinstance(atom, fast_downward.translate.pddl.conditions.Atom):
            if atom.predicate != "=":
                init.append((atom.predicate, [(a, objects[a]) for a in atom.args]))
        elif isinstance(atom, fast_downward.translate.pddl.f_expression.Assign):
            name = f"{atom.expression.value}"
            if atom.fluent.symbol != "total-cost" and not name.isdigit():
                init.append((name, [(a, objects[a]) for a in atom.fluent.args]))
    return Translation(
        sas=sas,
        objects=objects,
        types=[(t.name, list(t.supertype_names)) for t in task.types],
        actions={a.name: [(p.name, p.type_name) for p in a.parameters] for a in task.actions},
        init=init,
    ).build()


def _cache_file(domain: str, problem: str, cache_dir: Path | None) -> tuple[str, Path | None]:
    key = hashlib.sha256("\0".join((domain, problem)).encode()).hexdigest()
    return key, (cache_dir / f"{key}.json.z" if cache_dir is not None else None)


def _write(path: Path, game: Translation) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(zlib.compress(game.to_json().encode(), 1))
        os.replace(tmp, path)
    except OSError:  # read-only home: run without the disk cache
        pass


def prepare_game(domain: str, problem: str, cache_dir: Path | None = None, write: bool = True) -> Translation:
    """The translated game, from the in-memory LRU, the disk cache, or a fresh translation (then cached).

    ``write=False`` reads the disk cache but keeps a fresh translation in memory only (the generator's candidates:
    most are rejected, and :func:`save_game` stores the kept ones).
    """
    key, path = _cache_file(domain, problem, cache_dir)
    if key in _GAMES:
        _GAMES.move_to_end(key)
        return _GAMES[key]
    game = None
    if path is not None and path.is_file():
        try:
            game = Translation.from_json(zlib.decompress(path.read_bytes()).decode())
        except (ValueError, KeyError, TypeError, zlib.error):  # truncated, foreign or old entry: a miss
            game = None
    if game is None:
        game = _translate(domain, problem)
        if path is not None and write:
            _write(path, game)
    _GAMES[key] = game
    while len(_GAMES) > _MEMORY_CACHE_SIZE:
        _GAMES.popitem(last=False)
    return game


def save_game(domain: str, problem: str, cache_dir: Path | None) -> None:
    """Puts a game's translation in the disk cache (from memory when it is there) unless it is already on disk."""
    key, path = _cache_file(domain, problem, cache_dir)
    if path is not None and not path.is_file():
        _write(path, _GAMES[key] if key in _GAMES else _translate(domain, problem))


def make_cached_pddl_env_class():
    """The cached ``PddlEnv`` subclass (:mod:`agentrl.envs.alfworld.cached_env`: importing it needs textworld)."""
    from agentrl.envs.alfworld.cached_env import CachedPddlEnv  # textworld, only when a game starts

    return CachedPddlEnv


_CLASS = None


def start_game(path: str, facts: bool = True, cached: bool = True, cache_dir: Path | str | None = "default",
               write_cache: bool = True):
    """Loads a ``game.tw-pddl`` behind alfworld's ``AlfredDemangler`` and ``AlfredInfos`` wrappers.

    Args:
        path: the game file.
        facts: also report readable facts (the hand-coded expert reads them).
        cached: use :func:`make_cached_pddl_env_class`'s engine; ``False`` uses TextWorld's ``PddlEnv`` as is.
        cache_dir: disk cache of translated games (``"default"``: :func:`default_cache_dir`; None: memory only).
        write_cache: also write the games it translates to that cache (False: only read it).

    Returns:
        A TextWorld environment (``reset() -> GameState``, ``step(cmd) -> (GameState, score, done)``).
    """
    global _CLASS
    textworld = _textworld()
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    from textworld.envs.pddl.pddl import PddlEnv

    infos = textworld.EnvInfos(won=True, admissible_commands=True, facts=facts, extras=["gamefile"])
    if cached and _CLASS is None:
        _CLASS = make_cached_pddl_env_class()
    env = (_CLASS if cached else PddlEnv)(infos)
    if cached:
        env.cache_dir = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
        env.cache_write = write_cache
    for wrapper in (AlfredDemangler(), AlfredInfos):  # the demangler must wrap before load()
        env = wrapper(env)
    env.load(path)
    return env
