"""Data shared by the environment tests, generated once per session (no downloads)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# keep the ALFWorld engine's disk cache out of the user's ~/.cache
os.environ.setdefault("AGENTRL_ALFWORLD_CACHE", tempfile.mkdtemp(prefix="agentrl-engine-cache-"))


@pytest.fixture(scope="session")
def alfworld_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``agentrl gen alfworld --out D --split train --n 12 --seed 0``: the issue's must-show data."""
    pytest.importorskip("alfworld")
    from agentrl.cli import main

    root = tmp_path_factory.mktemp("alfworld-data")
    assert main(["gen", "alfworld", "--out", str(root), "--split", "train", "--n", "12", "--seed", "0"]) == 0
    return root


@pytest.fixture(scope="session")
def textworld_games(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small tw-make games via ``agentrl gen textworld``."""
    pytest.importorskip("textworld")
    from agentrl.cli import main

    out = tmp_path_factory.mktemp("tw-games")
    args = ["gen", "textworld", "--out", str(out), "--n", "2", "--seed", "1", "--world-size", "3",
            "--nb-objects", "5", "--quest-length", "3"]
    assert main(args) == 0
    return out
