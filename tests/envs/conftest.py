"""Data shared by the environment tests, generated once per session (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def alfworld_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``agentrl gen alfworld --out D --split train --n 12 --seed 0``: the issue's must-show data."""
    pytest.importorskip("alfworld")
    from agentrl.cli import main

    root = tmp_path_factory.mktemp("alfworld-data")
    assert main(["gen", "alfworld", "--out", str(root), "--split", "train", "--n", "12", "--seed", "0"]) == 0
    return root
