"""Crash-safe trajectory JSONL: append + fsync per episode; a torn last line is tolerated on read."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from agentrl.errors import AgentRLError
from agentrl.types import Episode


class TrajectoryError(AgentRLError, ValueError):
    """A trajectory file is malformed; the message starts with ``file:line``."""


class TrajectoryWriter:
    """Appends one episode per line and makes it durable before returning.

    A process killed at any moment loses at most the episode being written: each line is written with a
    single ``write`` call, flushed and fsync'd. If an earlier run died mid-line, the torn tail is cut off
    before the first append so the file stays valid JSONL. The writer holds an exclusive lock on the file
    while open: a second process resuming the same file would write every episode twice, so it fails instead.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise TrajectoryError(
                f"{self.path} is being written by another process; wait for it or stop it"
            ) from None
        _truncate_torn_tail(self.path)

    def write(self, episode: Episode) -> None:
        line = json.dumps(episode.to_dict(), ensure_ascii=False) + "\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()  # releases the lock

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    """Cuts a last line that has no newline (the write a crash interrupted)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return
        # Find the last newline; everything after it is the torn line.
        block = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                f.truncate(start + idx + 1)
                return
            pos = start
        f.truncate(0)


def iter_episodes(path: str | Path) -> Iterator[Episode]:
    """Yields episodes from a JSONL file.

    A last line without a trailing newline that does not parse is a crash's torn write and is skipped;
    any other bad line raises :class:`TrajectoryError` naming ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no such trajectory file")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        torn = number == len(lines) and not line.endswith("\n")
        try:
            yield Episode.from_dict(json.loads(line))
        except json.JSONDecodeError as err:
            if torn:
                return
            raise TrajectoryError(
                f"{path}:{number}: invalid JSON ({err.msg} at column {err.colno})"
            ) from None
        except (TypeError, ValueError) as err:
            raise TrajectoryError(f"{path}:{number}: {err}") from None


def read_episodes(paths: str | Path | Iterable[str | Path]) -> list[Episode]:
    """All episodes of one file, several files, or a comma-separated list of files."""
    if isinstance(paths, str | Path):
        paths = [p for p in str(paths).split(",") if p]
    return [ep for p in paths for ep in iter_episodes(p)]


def finished_ids(path: str | Path) -> set[str]:
    """Episode ids already in a file (for ``--resume``); an absent file has none."""
    path = Path(path)
    if not path.exists():
        return set()
    return {ep.episode_id for ep in iter_episodes(path)}
