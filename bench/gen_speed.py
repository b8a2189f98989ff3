"""ALFWorld task generation speed: the engine's grammar caching (envs/alfworld/grammar.py) vs the path before it.

Usage (CPU only; needs the alfworld extra):
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/gen_speed.py [--tasks 10] [--repeats 2] [--split train] [--seed 0]

Both paths generate the same ``--tasks`` tasks (same seed) in this process, one worker, repeats interleaved
(old, new, new, old, ...) so machine-load drift hits both alike; each run starts with empty in-memory caches and the
disk cache of translated games off, so every candidate pays its fast-downward translation, as a new task does.
"old" is the engine as it was before the grammar caching, kept here only: ``GameLogic(domain, grammar)`` parsed per
distinct grammar text (every task's text differs by its task line), TextWorld's derivation with a deepcopy of the
context and a tatsu parse of every rule condition and query, and the initial state built twice per game (load and
reset). The bench checks both paths write byte-identical files and prints tasks per CPU-second and the ratio.

Then the env's reset path (playing generated tasks, as rollouts do): ``agentrl/ALFWorld-v0`` resets every generated
task once per run, translations from a warm disk cache (what a rollout over many tasks meets after the first
pass), in-memory caches empty; old vs new, interleaved, checking the observations are identical.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ["AGENTRL_ALFWORLD_CACHE"] = "off"  # every run translates its candidates, like a first generation

_OLD_LOGICS: dict = {}
_OLD_PARSED: dict = {}


def _old_game_logic(domain: str, grammar: str):
    """The engine's ``game_logic`` before: a GameLogic per distinct (domain, grammar) text."""
    from textworld.envs.pddl import logic as pddl_logic

    key = (domain, grammar)
    if key not in _OLD_LOGICS:
        _OLD_LOGICS[key] = pddl_logic.GameLogic(domain=domain, grammar=grammar)
    return _OLD_LOGICS[key]


def _old_derive(grammar, start: str, context: dict) -> str:
    """The engine's ``_derive`` before: start strings parsed once, the rest is TextWorld's (replace/derive)."""
    from textworld.envs.pddl import textgen

    if start not in _OLD_PARSED:
        _OLD_PARSED[start] = textgen._parse_and_convert(start, rule_name="symbols")
    derivation = copy.deepcopy(_OLD_PARSED[start])[::-1]
    for symbol in derivation:
        symbol.context = textgen.copy_context(context)
    derived = []
    while derivation:
        symbol = derivation.pop()
        if isinstance(symbol, textgen.TerminalSymbol):
            derived.append(symbol)
        elif isinstance(symbol, textgen.NonterminalSymbol):
            derivation += grammar.replace(symbol)[::-1]
        else:
            derivation += symbol.derive()[::-1]
    return "".join(map(str, derived))


@contextmanager
def old_engine():
    """Swaps the pre-caching grammar path into the cached engine for the duration."""
    from agentrl.envs.alfworld import cached_env

    cls = cached_env.CachedPddlEnv
    saved = cached_env.game_logic, cached_env.derive, cls.reset
    new_reset = cls.reset

    def reset(self):  # before: reset rebuilt the initial state that load had just built
        self._untouched = False
        return new_reset(self)

    cached_env.game_logic, cached_env.derive, cls.reset = _old_game_logic, _old_derive, reset
    try:
        yield
    finally:
        cached_env.game_logic, cached_env.derive, cls.reset = saved


def _clear_caches() -> None:
    from agentrl.envs.alfworld import engine, grammar

    for cache in (engine._GAMES, grammar._LOGICS, grammar._DOCUMENTS, grammar._RULES, grammar._QUERIES,
                  grammar._PARSED, _OLD_LOGICS, _OLD_PARSED):
        cache.clear()


def run_once(mode: str, split: str, n: int, seed: int) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, digest of the files) for generating ``n`` tasks with ``mode``'s engine."""
    from agentrl.envs.alfworld.generator import generate, tasks_digest

    _clear_caches()
    with tempfile.TemporaryDirectory(prefix="agentrl-gen-speed-") as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        if mode == "old":
            with old_engine():
                generate(tmp, split, n, seed=seed, progress=False)
        else:
            generate(tmp, split, n, seed=seed, progress=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu, wall, tasks_digest(Path(tmp))


def reset_once(mode: str, root: Path, split: str, cache: Path) -> tuple[float, list[str]]:
    """(CPU seconds, observations) for resetting every task under ``root`` once, with ``mode``'s engine."""
    from agentrl.envs.alfworld.env import ALFWorldEnv

    _clear_caches()
    env = ALFWorldEnv(root, split, cache_dir=str(cache))
    cpu = time.process_time()
    if mode == "old":
        with old_engine():
            observations = [env.reset(options={"task_id": t})[0] for t in env.task_ids]
    else:
        observations = [env.reset(options={"task_id": t})[0] for t in env.task_ids]
    cpu = time.process_time() - cpu
    env.close()
    return cpu, observations


def bench_resets(split: str, n: int, seed: int, repeats: int) -> tuple[dict[str, float], bool]:
    """Median CPU seconds per reset of a new task, old and new, and whether every observation was identical."""
    from agentrl.envs.alfworld.generator import generate

    with tempfile.TemporaryDirectory(prefix="agentrl-gen-speed-") as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "cache"
        generate(root, split, n, seed=seed, progress=False)
        reset_once("new", root, split, cache)  # fills the disk cache of translations
        times: dict[str, list[float]] = {"old": [], "new": []}
        seen = []
        for repeat in range(repeats):
            for mode in ("old", "new") if repeat % 2 == 0 else ("new", "old"):
                cpu, observations = reset_once(mode, root, split, cache)
                times[mode].append(cpu / n)
                seen.append(observations)
    return {mode: statistics.median(t) for mode, t in times.items()}, all(o == seen[0] for o in seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from agentrl.envs.alfworld.generator import generate

    with tempfile.TemporaryDirectory() as tmp:  # warm-up: imports, the engine's fast-downward copy, room files
        generate(tmp, args.split, 2, seed=args.seed + 1000, progress=False)
    times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    digests: dict[str, set[str]] = {"old": set(), "new": set()}
    for repeat in range(args.repeats):
        for mode in ("old", "new") if repeat % 2 == 0 else ("new", "old"):
            cpu, wall, digest = run_once(mode, args.split, args.tasks, args.seed)
            times[mode].append((cpu, wall))
            digests[mode].add(digest)
            print(f"repeat {repeat} {mode}: {args.tasks / cpu:.2f} tasks/CPU-s ({cpu:.1f} CPU-s, {wall:.1f} s wall)")
    identical = len(digests["old"] | digests["new"]) == 1
    cpu = {mode: statistics.median(c for c, _ in runs) for mode, runs in times.items()}
    wall = {mode: statistics.median(w for _, w in runs) for mode, runs in times.items()}
    print(f"\n{args.tasks} {args.split} tasks, seed {args.seed}, medians of {args.repeats}:")
    print(f"{'':6}{'tasks/CPU-s':>12}{'CPU-s/task':>12}{'tasks/s wall':>14}")
    for mode in ("old", "new"):
        print(f"{mode:6}{args.tasks / cpu[mode]:12.2f}{cpu[mode] / args.tasks:12.2f}{args.tasks / wall[mode]:14.2f}")
    print(f"new/old speed-up: {cpu['old'] / cpu['new']:.2f}x CPU, {wall['old'] / wall['new']:.2f}x wall; "
          f"files byte-identical: {identical}")
    resets, same = bench_resets(args.split, args.tasks, args.seed, args.repeats)
    print(f"\nenv reset of a new task (translation from the disk cache), medians of {args.repeats}:")
    for mode in ("old", "new"):
        print(f"{mode:6}{resets[mode] * 1000:8.1f} CPU-ms/reset")
    print(f"new/old speed-up: {resets['old'] / resets['new']:.2f}x; observations identical: {same}")
    if not identical or not same:
        raise SystemExit("the two paths generated different files or observations")


if __name__ == "__main__":
    main()
