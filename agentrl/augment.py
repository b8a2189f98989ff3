"""Object-name augmentation of ALFWorld episodes: K copies in which object types are consistently renamed.

The probes of issue 21 found that a small SFT'd model memorises frequent object names instead of copying the
task's noun from the task sentence and the observations ("take <the task's object>" is almost never chosen when
that object is in view). A renamed copy of a demonstration is the same episode with other names: "apple 1"
becomes "tomato 1" in the task sentence, every observation, every thought and action, the admissible-command
listings, the candidates and the DAgger labels, so that only copying the names from the context fits them all.

What is renamed, and how:

* **Types, from the env's text.** An episode's types are the names the env writes with an instance number
  (``"alarmclock 2"``) in its user turns and observations; the assistant turns (a model's output, untrusted) are
  renamed but never define a type. Receptacles are the types of the opening room listing (``Looking quickly
  around you, you see a bed 1, a desk 1, ...``), every other type is an object. Objects are renamed; receptacles
  too with ``receptacles=True``. A name that never appears with an instance number (the task's object in an
  episode that never saw it) is left as it is.
* **Whole words only.** ``pan`` is not renamed inside ``pant`` or ``pancake``, nor ``towel`` in
  ``towelholder``; instance numbers stay (``apple 1`` -> ``tomato 1``); a capitalised occurrence stays
  capitalised; names of several words (``credit card`` from a vocabulary) are matched and written as such.
* **Draw.** Each copy draws, with a random generator seeded by ``(seed, episode id, copy)`` (so a copy does not
  depend on the file's order or on the other episodes), distinct new names from the pool of object names (the
  object types found in the whole input file, or a ``vocab`` file) and of receptacle names (those found in the
  file): never two types to one name, never a name that already occurs as a word in the episode's text. If the
  pool has fewer free names than the episode has types, only some are renamed: the types the task sentence names
  first, then a random subset of the others; a copy with nothing to rename is not written (both are counted).
* **Left as they are:** the system message (the instructions and their in-context example, identical at test
  time), ``task_id`` (the copy is of the same task: held-out splits by task stay clean), ``task_type``,
  ``policy``, ``success``, ``reward`` and the other ``meta`` fields. Each copy gets the episode id
  ``<source id>/aug<c>`` and ``meta.augment = {"source", "copy", "seed", "renames": {old: new}}``.

Renamed episodes were never played: the env cannot replay them, and their reward is the source's, so they are
SFT data only (``agentrl.training_data.load_tokenized`` refuses them for the learners that read rewards; see
``docs/learner.md``).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrl.config import option, require
from agentrl.errors import AgentRLError
from agentrl.trajectory import iter_episodes
from agentrl.types import Episode

ALFWORLD_ENV = "agentrl/ALFWorld-v0"
_TASK = re.compile(r"Your task is to: ([^\n]*)")
_ROOM = re.compile(r"Looking quickly around you, you see (.*?)\.(?=\s|$)", re.DOTALL)
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![A-Za-z0-9_])", r"(?![A-Za-z0-9_])"


class AugmentError(AgentRLError, ValueError):
    """An input of the augmentation is unusable; the message names it (``file:line``)."""


@dataclass(frozen=True)
class Names:
    """Type names of an episode (or a pool of them): objects and receptacles, each sorted."""

    objects: tuple[str, ...] = ()
    receptacles: tuple[str, ...] = ()


def _alternatives(names: Iterable[str]) -> str:
    """A regex alternation of ``names``, longest first (``credit card`` before ``card``), spaces literal."""
    return "|".join(re.escape(n) for n in sorted(set(names), key=lambda n: (-len(n), n)))


def _word_pattern(alternatives: str) -> re.Pattern[str]:
    """Whole-word occurrences, any case, of a regex alternation of names."""
    return re.compile(f"{_EDGE_BEFORE}({alternatives}){_EDGE_AFTER}", re.IGNORECASE)


def _instance_pattern(known: Iterable[str]) -> re.Pattern[str]:
    """``<name> <number>``: a ``known`` name (several words allowed) or one lower-case word, then the number."""
    alternatives = _alternatives(known)
    name = f"(?:{alternatives}|[a-z]+)" if alternatives else "[a-z]+"
    return re.compile(f"{_EDGE_BEFORE}({name}) \\d+{_EDGE_AFTER}")


def _env_texts(episode: Episode) -> list[str]:
    """What the env wrote: the user turns and the steps' observations (never the model's turns)."""
    return [m["content"] for m in episode.messages if m.get("role") == "user"] + [
        s.observation for s in episode.steps
    ]


def episode_names(episode: Episode, known: Iterable[str] = ()) -> Names:
    """The object and receptacle types ``episode`` shows (see the module docstring); ``known`` names may have
    several words."""
    pattern = _instance_pattern(known)
    texts = _env_texts(episode)
    found = {m.group(1) for text in texts for m in pattern.finditer(text)}
    opening = next((text for text in texts if _ROOM.search(text)), "")
    room = _ROOM.search(opening)
    receptacles = {m.group(1) for m in pattern.finditer(room.group(1))} if room else set()
    return Names(tuple(sorted(found - receptacles)), tuple(sorted(receptacles)))


def vocabulary(episodes: Iterable[Episode], known: Iterable[str] = ()) -> Names:
    """Every object and receptacle type of ``episodes`` (a name seen in both roles is kept in both)."""
    known = list(known)
    objects: set[str] = set()
    receptacles: set[str] = set()
    for episode in episodes:
        names = episode_names(episode, known)
        objects.update(names.objects)
        receptacles.update(names.receptacles)
    return Names(tuple(sorted(objects)), tuple(sorted(receptacles)))


def _renamable_texts(episode: Episode) -> list[str]:
    """Every text a copy rewrites: the chat without its system message, and every step field that holds text."""
    texts = [m["content"] for m in episode.messages if m.get("role") != "system"]
    for step in episode.steps:
        texts += [step.observation, step.thought, step.action, step.label or "", *(step.masked or [])]
        texts += [t for c in step.candidates or [] for t in (c.action, c.raw, c.thought)]
    return texts


def words_present(episode: Episode, names: Iterable[str]) -> set[str]:
    """Which of ``names`` occur as whole words (any case) in the text a copy of ``episode`` rewrites."""
    alternatives = _alternatives(names)
    if not alternatives:
        return set()
    pattern = _word_pattern(alternatives)
    return {m.group(1).lower() for text in _renamable_texts(episode) for m in pattern.finditer(text)}


def draw_renames(sources: Sequence[str], pool: Sequence[str], taken: set[str], rng: random.Random,
                 first: Iterable[str] = ()) -> dict[str, str]:
    """A map from ``sources`` to distinct names of ``pool`` outside ``taken``. If too few are free, only as many
    sources as there are free names are renamed: those in ``first`` (the task's types) before a random rest."""
    free = sorted(set(pool) - taken)
    chosen = sorted(sources)
    if len(free) < len(chosen):
        must = [s for s in chosen if s in set(first)][: len(free)]
        rest = [s for s in chosen if s not in must]
        chosen = sorted(must + rng.sample(rest, len(free) - len(must)))
    return dict(zip(chosen, rng.sample(free, len(chosen)), strict=True))


def task_names(episode: Episode, names: Names) -> set[str]:
    """The types of ``names`` that the task sentence (``Your task is to: ...``) names."""
    task = next((m.group(1) for text in _env_texts(episode) if (m := _TASK.search(text))), "")
    alternatives = _alternatives([*names.objects, *names.receptacles])
    return {m.group(1).lower() for m in _word_pattern(alternatives).finditer(task)} if alternatives else set()


class Renamer:
    """Rewrites text with ``renames`` (whole words, any case; a capitalised match stays capitalised)."""

    def __init__(self, renames: dict[str, str]):
        self.renames = {old.lower(): new for old, new in renames.items()}
        alternatives = _alternatives(self.renames)
        self.pattern = _word_pattern(alternatives) if alternatives else None

    def _replace(self, match: re.Match[str]) -> str:
        old = match.group(1)
        new = self.renames[old.lower()]
        return new[:1].upper() + new[1:] if old[:1].isupper() else new

    def __call__(self, text: str) -> str:
        return text if self.pattern is None or not text else self.pattern.sub(self._replace, text)


def _rename_step(step: dict[str, Any], rename: Renamer) -> dict[str, Any]:
    step = {**step, **{k: rename(step[k]) for k in ("observation", "thought", "action") if step.get(k)}}
    if step.get("label") is not None:
        step["label"] = rename(step["label"])
    if step.get("masked") is not None:
        step["masked"] = [rename(c) for c in step["masked"]]
    if step.get("candidates") is not None:
        step["candidates"] = [{**c, **{k: rename(c[k]) for k in ("action", "raw", "thought") if c.get(k)}}
                              for c in step["candidates"]]
    return step


def rename_record(record: dict[str, Any], renames: dict[str, str], copy: int, seed: int) -> dict[str, Any]:
    """Copy ``copy`` of an episode's JSON record with ``renames`` applied everywhere but the system message, its
    own episode id and ``meta.augment`` (see the module docstring); ``record`` is not changed."""
    rename = Renamer(renames)
    source = record["episode_id"]
    return {
        **record,
        "episode_id": f"{source}/aug{copy}",
        "messages": [m if m.get("role") == "system" else {**m, "content": rename(m["content"])}
                     for m in record.get("messages", [])],
        "steps": [_rename_step(step, rename) for step in record.get("steps", [])],
        "meta": {**record.get("meta", {}), "augment": {"source": source, "copy": copy, "seed": seed,
                                                        "renames": dict(sorted(renames.items()))}},
    }


def rename_episode(episode: Episode, renames: dict[str, str], copy: int, seed: int) -> Episode:
    """:func:`rename_record` on an :class:`Episode` (a new one; ``episode`` is not changed)."""
    return Episode.from_dict(rename_record(episode.to_dict(), renames, copy, seed))


def taken_names(episode: Episode, names: Names, pools: Names) -> set[str]:
    """Names a copy of ``episode`` must not create: its own types and every pool name already in its text."""
    return set(names.objects) | set(names.receptacles) | words_present(episode, [*pools.objects, *pools.receptacles])


def copy_renames(episode: Episode, copy: int, seed: int, names: Names, pools: Names, taken: set[str],
                 receptacles: bool = False) -> dict[str, str]:
    """The renames of copy ``copy`` of ``episode`` (types ``names``; ``taken``: :func:`taken_names`): objects
    (and receptacles) to distinct free pool names, drawn by a generator seeded by ``(seed, episode id, copy)``."""
    rng = random.Random(f"agentrl-augment:{seed}:{episode.episode_id}:{copy}")
    task = task_names(episode, names)
    renames = draw_renames(names.objects, pools.objects, taken, rng, first=task)
    if receptacles:
        renames.update(draw_renames(names.receptacles, pools.receptacles, taken | set(renames.values()), rng, task))
    return renames


def load_vocab(path: str | Path) -> list[str]:
    """Object names, one per line (several words allowed; ``#`` starts a comment; case is folded)."""
    path = Path(path)
    if not path.is_file():
        raise AugmentError(f"{path}: no such vocabulary file (--vocab: object names, one per line)")
    names: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        name = " ".join(line.split("#", 1)[0].split()).lower()
        if not name:
            continue
        if not re.fullmatch(r"[a-z][a-z0-9]*(?: [a-z][a-z0-9]*)*", name):
            raise AugmentError(f"{path}:{number}: {line.strip()!r} is not an object name (letters, digits, spaces)")
        names.append(name)
    if not names:
        raise AugmentError(f"{path}: the vocabulary has no names")
    return names


@dataclass
class AugmentConfig:
    """Options of `agentrl augment`: renamed copies of ALFWorld episodes (SFT data)."""

    data: str = option("", help="trajectory JSONL of ALFWorld episodes (e.g. expert demonstrations)")
    out: str = option("", help="output trajectory JSONL (rewritten as a whole)")
    copies: int = option(1, help="renamed copies of each episode")
    seed: int = option(0, help="seed of the renaming draws")
    vocab: str | None = option(None, help="file of object names to draw from, one per line "
                               "(default: the object types found in --data)")
    keep_original: bool = option(False, help="also write each original episode, before its copies")
    receptacles: bool = option(False, help="rename receptacle types too (drawn from those found in --data)")

    def __post_init__(self) -> None:
        require(bool(self.data), "give the input: `--data demos.jsonl`")
        require(bool(self.out), "give the output: `--out augmented.jsonl`")
        require(self.copies >= 1, f"--copies must be >= 1, got {self.copies}")
        require(Path(self.out).resolve() != Path(self.data).resolve(), "--out must differ from --data")
        require(not Path(self.out).is_dir(), f"--out {self.out} is a folder; give a .jsonl file")


def _read_alfworld(path: str) -> list[Episode]:
    """The episodes of ``path``; anything but an original ALFWorld episode is refused with ``file:line``."""
    episodes = []
    for number, episode in enumerate(iter_episodes(path), start=1):
        if episode.env_id != ALFWORLD_ENV:
            raise AugmentError(f"{path}:{number}: episode {episode.episode_id} is from {episode.env_id}; "
                               f"augment renames the objects of {ALFWORLD_ENV} episodes only")
        if "augment" in episode.meta:
            raise AugmentError(f"{path}:{number}: episode {episode.episode_id} is already a renamed copy "
                               "(meta.augment); augment the original file")
        episodes.append(episode)
    return episodes


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def augment(cfg: AugmentConfig) -> dict[str, Any]:
    """Writes ``cfg.copies`` renamed copies of every episode of ``cfg.data`` (and the originals with
    ``keep_original``) to ``cfg.out``, atomically (a temporary file beside it replaces it at the end, so a killed
    run leaves no half file, and a rerun rewrites it).

    Returns:
        Counts ``{"episodes", "originals", "copies", "skipped_copies", "partial_copies", "errored"}`` (a
        skipped copy had no free name; a partial one renamed only some types; errored episodes are not
        copied), ``seconds`` and ``episodes_per_s`` (input episodes per second of the whole transform).
    """
    start = time.perf_counter()
    known = load_vocab(cfg.vocab) if cfg.vocab else []
    episodes = _read_alfworld(cfg.data)
    found = vocabulary(episodes, known)
    pools = Names(tuple(known) or found.objects, found.receptacles)
    counts = {"episodes": len(episodes), "originals": 0, "copies": 0, "skipped_copies": 0, "partial_copies": 0,
              "errored": 0}  # fmt: skip
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for episode in episodes:
            record = episode.to_dict()
            if cfg.keep_original:
                f.write(_line(record))
                counts["originals"] += 1
            if episode.error:
                counts["errored"] += 1
                continue
            names = episode_names(episode, known)
            taken = taken_names(episode, names, pools)
            wanted = len(names.objects) + (len(names.receptacles) if cfg.receptacles else 0)
            for copy in range(1, cfg.copies + 1):
                renames = copy_renames(episode, copy, cfg.seed, names, pools, taken, cfg.receptacles)
                if not renames:
                    counts["skipped_copies"] += 1
                    continue
                counts["partial_copies"] += len(renames) < wanted
                f.write(_line(rename_record(record, renames, copy, cfg.seed)))
                counts["copies"] += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)  # the output appears whole or not at all
    seconds = time.perf_counter() - start
    return {**counts, "seconds": round(seconds, 3), "episodes_per_s": round(len(episodes) / max(seconds, 1e-9), 1)}
