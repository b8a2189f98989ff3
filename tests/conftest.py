"""Shared fixtures: a tiny causal LM with a locally trained tokenizer and chat template (no downloads)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# alfworld creates $ALFWORLD_DATA on import; keep tests out of the user's cache.
os.environ.setdefault("ALFWORLD_DATA", tempfile.mkdtemp(prefix="agentrl-alfworld-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_CORPUS = [
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 1, "
    "a fridge 1, a microwave 1, a sinkbasin 1, and a shelf 1.",
    "Your task is to: put a clean mug in coffeemachine.",
    "Think: I need to find a mug first. Action: go to countertop 1",
    "Action: take mug 1 from countertop 1",
    "Action: clean mug 1 with sinkbasin 1",
    "Action: move mug 1 to coffeemachine 1",
    "You pick up the mug 1 from the countertop 1. Nothing happens. You arrive at fridge 1.",
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?",
    "Tom starts with 3 apples.\nHe buys 5 more, so 3 + 5 = 8.\n#### 8",
] * 4


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama checkpoint (hidden 64, 2 layers) with a ChatML chat template."""
    from agentrl.models import build_tiny_model

    model, tokenizer = build_tiny_model(TINY_CORPUS, vocab_size=512, hidden_size=64, num_layers=2, num_heads=4)
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    """(model, tokenizer) loaded from ``tiny_model_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
