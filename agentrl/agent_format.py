"""How an agent talks, recorded next to its weights: ``agent_config.json`` in a policy folder.

A model trained on thought-free ``Action: ...`` turns, or on prompts that list the admissible commands, only
works when it is prompted the same way. Like a generation config, the format travels with the model:
``agentrl model tiny`` and ``agentrl learn`` write it (from the trajectories the model is trained on),
``rollout``, ``eval``, ``iterate`` and ``serve`` read it, and a flag given on the command line overrides it,
with a warning when the two disagree on what the model reads or writes (a thought-free model prompted for
thoughts; the action space only constrains decoding and is overridden silently).

``agent_config.json``::

    {"format": 1, "thoughts": false, "example": false, "history": null,
     "action_space": "free", "list_admissible": false}

Fields (every one optional in the file; a missing one takes the default):

* ``thoughts``: assistant turns are ``Think: ...\\nAction: ...`` (true) or ``Action: ...`` only (false);
* ``example``: the system prompt carries the in-context example;
* ``history``: the prompt keeps the last N turns (``null``: the whole chat);
* ``action_space``: ``free`` (any text after ``Action:``) or ``admissible`` (one of the env's commands);
* ``list_admissible``: the observation lists the admissible commands.

Run configs spell "not given" as ``None``; ``history`` uses ``-1`` for "the whole chat, whatever the model
says" (``None`` already means "the model's choice").
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrl.errors import AgentRLError
from agentrl.policies.action_space import ACTION_SPACES
from agentrl.shipped import shipped_dir
from agentrl.trajectory import iter_episodes

FILENAME = "agent_config.json"
FORMAT_VERSION = 1
FULL_HISTORY = -1  # a run config's explicit "whole chat" (None there means "as the model records")
# Fields that change what the model reads or is asked to write; a run that differs from the model's file there
# is warned. The action space only constrains decoding (the prompt is the same), so choosing among the
# admissible commands with a free-text model is a choice, not a mismatch.
PROMPT_FIELDS = ("thoughts", "example", "history", "list_admissible")


class AgentFormatError(AgentRLError, ValueError):
    """An ``agent_config.json`` is unreadable or holds a bad value; the message names file and key."""


@dataclass(frozen=True)
class AgentFormat:
    """The prompt and turn format of an agent (see the module docstring for each field)."""

    thoughts: bool = True
    example: bool = True
    history: int | None = None
    action_space: str = "free"
    list_admissible: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "agent format") -> AgentFormat:
        """Validates a mapping (unknown keys are ignored: a newer agentrl may add fields)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("thoughts", "example", "list_admissible"):
            if key in values and not isinstance(values[key], bool):
                raise AgentFormatError(f"{where}: `{key}` must be true or false, got {values[key]!r}")
        history = values.get("history")
        if history is not None and (isinstance(history, bool) or not isinstance(history, int) or history < 0):
            raise AgentFormatError(f"{where}: `history` must be null or an integer >= 0, got {history!r}")
        if values.get("action_space", "free") not in ACTION_SPACES:
            raise AgentFormatError(
                f"{where}: `action_space` must be one of {', '.join(ACTION_SPACES)}, got {values['action_space']!r}"
            )
        return cls(**values)

    def save(self, folder: str | Path) -> Path:
        """Writes ``folder/agent_config.json`` and returns its path."""
        path = Path(folder) / FILENAME
        path.write_text(json.dumps({"format": FORMAT_VERSION, **self.to_dict()}, indent=2) + "\n")
        return path


def load(folder: str | Path) -> AgentFormat | None:
    """The format recorded in ``folder/agent_config.json`` (``folder`` may name a shipped agent); ``None`` when
    there is none (a hub name, ``default``, or a model made before agent formats existed).

    Raises:
        AgentFormatError: the file is not a JSON object or holds a bad value.
    """
    path = (shipped_dir(str(folder)) or Path(str(folder)).expanduser()) / FILENAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AgentFormatError(f"{path}: not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise AgentFormatError(f"{path}: expected a JSON object")
    return AgentFormat.from_dict(data, where=str(path))


def _run_value(key: str, value: Any) -> Any:
    """A run config's value in the format's terms (``thoughts: "off"`` -> False, ``history: -1`` -> None)."""
    if key == "thoughts" and isinstance(value, str):
        return value == "on"
    if key == "history" and value == FULL_HISTORY:
        return None
    return value


def _show(key: str, value: Any) -> str:
    if key == "thoughts" or isinstance(value, bool):
        return "on" if value else "off"
    if key == "history" and value is None:
        return "full"
    return str(value)


def resolve(
    given: Mapping[str, Any], recorded: AgentFormat | None, source: str = "the model"
) -> tuple[AgentFormat, list[str]]:
    """The format of a run: each field from ``given`` (a run config's values; ``None`` = not given), else
    from ``recorded`` (the model's ``agent_config.json``), else the default.

    Returns:
        The format and one warning per prompt field (:data:`PROMPT_FIELDS`) that is given and differs from
        what ``recorded`` says.
    """
    base = recorded or AgentFormat()
    values: dict[str, Any] = {}
    warnings = []
    for f in dataclasses.fields(AgentFormat):
        if given.get(f.name) is None:
            continue
        value = _run_value(f.name, given[f.name])
        values[f.name] = value
        if recorded is not None and value != getattr(recorded, f.name) and f.name in PROMPT_FIELDS:
            warnings.append(
                f"{source} was trained with {f.name} {_show(f.name, getattr(recorded, f.name))}; this run uses "
                f"{f.name} {_show(f.name, value)} (the flag wins)"
            )
    return dataclasses.replace(base, **values), warnings


def of_run(cfg: Any, generator: Any = None) -> tuple[AgentFormat, list[str]]:
    """The format of a rollout config: its flags, else the model folder's ``agent_config.json``, else the one
    a generator reports (``agentrl serve`` publishes its model's format), else the defaults.

    Only model policies read a model's format; expert and random policies take the flags or the defaults.
    """
    given = {f.name: getattr(cfg, f.name, None) for f in dataclasses.fields(AgentFormat)}
    recorded, source = None, "the model"
    if getattr(cfg, "uses_model", False):
        model = str(getattr(cfg, "model", "") or "")
        if model:
            recorded, source = load(model), f"{model} ({FILENAME})"
        if recorded is None and generator is not None and hasattr(generator, "agent_format"):
            recorded, source = generator.agent_format(), f"the served model {model}"
    return resolve(given, recorded, source)


def infer(episodes: Iterable[Any], base: AgentFormat | None = None) -> tuple[AgentFormat, list[str]]:
    """The format a model trained on ``episodes`` talks in: per field, what the episodes agree on.

    Each episode says what it was asked for in ``meta["agent"]`` (rollouts record it); files written before
    that are read from the chat (see :func:`_recorded`). A field the episodes do not record keeps ``base``
    (the base model's format) or the default; a field they disagree on takes the majority, with a warning.
    """
    votes: dict[str, Counter] = {f.name: Counter() for f in dataclasses.fields(AgentFormat)}
    for ep in episodes:
        recorded = _recorded(ep)
        for key, value in recorded.items():
            if key in votes:
                votes[key][json.dumps(value)] += 1
    values: dict[str, Any] = {}
    warnings = []
    for key, counter in votes.items():
        if not counter:
            continue
        (top, n), *rest = counter.most_common()
        values[key] = json.loads(top)
        if rest:
            others = ", ".join(f"{_show(key, json.loads(v))} ({c})" for v, c in rest)
            warnings.append(f"the episodes disagree on {key}: {_show(key, values[key])} ({n}) vs {others}; "
                            f"the model records {_show(key, values[key])}")
    merged = {**(base or AgentFormat()).to_dict(), **values}
    return AgentFormat.from_dict(merged, where="the episodes' meta.agent"), warnings


def _recorded(episode: Any) -> dict[str, Any]:
    """What one episode says about its format: ``meta["agent"]``, else what its chat shows (``thoughts``: an
    assistant turn with a ``Think:`` line; ``example``: an ``Example:`` block in the system prompt)."""
    meta = episode.meta if isinstance(episode.meta, dict) else {}
    recorded = dict(meta.get("agent") or {})
    messages = episode.messages or []
    if "thoughts" not in recorded and episode.env_id != "agentrl/Math-v0":  # math turns are steps either way
        turns = [m.get("content") or "" for m in messages if m.get("role") == "assistant"]
        if turns:
            recorded["thoughts"] = any(t.lstrip().lower().startswith(("think:", "thought:")) for t in turns)
    if "example" not in recorded and messages and messages[0].get("role") == "system":
        recorded["example"] = "\nExample:\n" in (messages[0].get("content") or "")
    return recorded


def write_for_training(folders: Iterable[str | Path], data: str | Iterable[str], base_model: str | None) -> AgentFormat:
    """Infers the format of a model trained on the trajectory file(s) ``data`` from ``base_model`` and writes
    it to every folder in ``folders`` (warnings go to stderr)."""

    paths = [p for p in str(data).split(",") if p] if isinstance(data, str | Path) else list(data)
    base = load(base_model) if base_model else None
    episodes = (ep for path in paths for ep in iter_episodes(path))
    fmt, warnings = infer(episodes, base)
    report(warnings)
    for folder in folders:
        if Path(folder).is_dir():
            fmt.save(folder)
    return fmt


def report(warnings: Iterable[str]) -> None:
    """Prints each warning as one ``agentrl: warning: ...`` line on stderr."""
    import sys

    for text in warnings:
        print(f"agentrl: warning: {text}", file=sys.stderr, flush=True)
