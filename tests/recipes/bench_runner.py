"""Runs a bench/<name>/run.py script's main() in this process (the scripts are not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location(f"bench_{name}_run", ROOT / "bench" / name / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.main(argv)
