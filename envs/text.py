"""Text spaces and action cleaning shared by the agentrl environments."""

from __future__ import annotations

import unicodedata
from typing import Any

from gymnasium import spaces

# Printable characters up to U+2FFF (Latin, Greek, Cyrillic, math symbols, currency, arrows, ...) plus newline
# and tab: everything the games and math problems print. Observations are mapped into this set.
TEXT_CHARSET = frozenset(["\n", "\t"] + [chr(c) for c in range(0x20, 0x3000) if chr(c).isprintable()])
MAX_OBSERVATION_CHARS = 100_000
MAX_ACTION_CHARS = 2_000


def text_space(max_length: int) -> spaces.Text:
    """A ``gymnasium.spaces.Text`` over :data:`TEXT_CHARSET` (empty strings allowed)."""
    return spaces.Text(max_length=max_length, min_length=0, charset=TEXT_CHARSET)


def choose_task(task_ids: list[str], options: dict | None, rng: Any, where: str) -> str:
    """The task of a ``reset``: ``options["task_id"]`` if given (it must be one of ``task_ids``), else one drawn
    with the env's ``np_random`` (``rng``); ``where`` names the task set in the error (``"12 problems"``).

    Raises:
        ValueError: an unknown ``task_id``.
    """
    task_id = (options or {}).get("task_id")
    if task_id is None:
        return task_ids[int(rng.integers(len(task_ids)))]
    if task_id not in task_ids:
        raise ValueError(f"unknown task_id {task_id!r} ({where})")
    return str(task_id)


def clean_observation(text: str, max_length: int = MAX_OBSERVATION_CHARS) -> str:
    """Maps characters outside :data:`TEXT_CHARSET` to ``?`` and truncates, so the text is in the space."""
    text = "".join(c if c in TEXT_CHARSET else "?" for c in text)
    return text[:max_length]


def clean_action(action: object, max_chars: int = MAX_ACTION_CHARS) -> str:
    """A command a text engine can take safely: printable, one line, collapsed spaces; "" for junk.

    Control characters and backslashes (frotz escapes in Z-machine games) are dropped, runs of whitespace become
    one space, and anything longer than ``max_chars`` or not a string is rejected as "" (a no-op command).
    """
    if not isinstance(action, str) or len(action) > max_chars:
        return ""
    kept = []
    for c in action:
        if c.isspace():
            kept.append(" ")
        elif c == "\\" or unicodedata.category(c).startswith("C"):
            continue
        else:
            kept.append(c)
    return " ".join("".join(kept).split())
