"""Shipped agents: `agentrl model pack` makes the compact adapter, names like `alfworld-agent` load it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agentrl import agent_format
from agentrl.models import (
    ModelError,
    build_tiny_model,
    default_model_dir,
    load_causal_lm,
    pack_adapter,
    resolve_model,
)
from agentrl.shipped import SHIPPED_AGENTS, shipped_dir

TEXTS = ["go to the fridge 1", "take the apple 2 from the countertop 1", "You arrive at the sink basin 1."]


@pytest.fixture()
def adapter_on_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A LoRA adapter trained (its B made non-zero) on a tiny model that stands in for the converted SmolLM2:
    AGENTRL_CACHE points at a folder whose `default` is that tiny model."""
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("AGENTRL_CACHE", str(tmp_path / "cache"))
    model, tok = build_tiny_model(TEXTS, vocab_size=128, hidden_size=32, num_layers=1, num_heads=2)
    model.save_pretrained(default_model_dir())
    tok.save_pretrained(default_model_dir())
    base = load_causal_lm("default")
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "policy_lora")
    agent_format.AgentFormat(thoughts=False, action_space="admissible").save(tmp_path / "policy_lora")
    return tmp_path / "policy_lora"


def test_pack_halves_the_adapter_names_its_base_default_and_keeps_its_outputs(adapter_on_default: Path) -> None:
    recorded = json.loads((adapter_on_default / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(recorded).resolve() == default_model_dir().resolve()  # the machine's path: not portable

    packed = pack_adapter(adapter_on_default, adapter_on_default.parent / "packed")
    config = json.loads((packed / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "default"
    assert config["target_modules"] == sorted(config["target_modules"])  # one order, so a re-pack diffs clean
    size = lambda p: (p / "adapter_model.safetensors").stat().st_size  # noqa: E731
    assert size(packed) < 0.6 * size(adapter_on_default)
    fmt = agent_format.load(packed)
    assert fmt is not None and fmt.thoughts is False and fmt.action_space == "admissible"

    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        plain = load_causal_lm("default")(ids).logits
        full = load_causal_lm(adapter_on_default)(ids).logits
        small = load_causal_lm(packed)(ids).logits
    assert (full - plain).abs().max() > 0.05  # the adapter changes the model ...
    assert (small - full).abs().max() < 0.02 * (full - plain).abs().max() + 1e-3  # ... and bf16 keeps that change


def test_pack_refuses_a_folder_that_is_not_an_adapter(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a LoRA adapter folder"):
        pack_adapter(tmp_path, tmp_path / "out")


def test_a_shipped_name_resolves_to_its_folder_and_an_unknown_name_stays_a_hub_name() -> None:
    for name in SHIPPED_AGENTS:
        assert resolve_model(name) == str(shipped_dir(name))
    assert shipped_dir("no-such-agent") is None
    assert resolve_model("someone/some-model") == "someone/some-model"


def test_the_alfworld_agent_is_a_small_bf16_adapter_on_default_prompted_thought_free_over_admissible_commands() -> None:
    from safetensors import safe_open

    folder = shipped_dir("alfworld-agent")
    weights = folder / "adapter_model.safetensors"
    assert weights.stat().st_size <= 20 * 2**20  # the cap on a shipped checkpoint
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "default" and config["peft_type"] == "LORA"
    with safe_open(str(weights), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    fmt = agent_format.load("alfworld-agent")
    assert fmt is not None and fmt.thoughts is False and fmt.action_space == "admissible" and fmt.example is False
    assert "agentrl learn" in (folder / "README.md").read_text()  # the card says how it was made


def _takes_the_task_object(model: str) -> int:
    """How many of the fixture's held-out train states (the expert's next command takes the task's object, in
    view) the model's greedy admissible choice gets right: the skill the untrained model lacks."""
    from agentrl.backends.base import Request, Sampling
    from agentrl.backends.transformers_backend import TransformersBackend

    states = json.loads((Path(__file__).parents[1] / "fixtures" / "alfworld_take_states.json").read_text())["states"]
    backend = TransformersBackend.from_pretrained(model, carry_cache=False)
    requests = [Request(messages=[*s["messages"], {"role": "assistant", "content": "Action: "}],
                        choices=s["admissible"]) for s in states]
    right = 0
    for request, state in zip(requests, states, strict=True):  # one at a time: the prompts differ in length
        ((choice,),) = backend.generate([request], Sampling())
        right += choice.text == state["expert_action"]
    return right


@pytest.mark.slow
def test_the_alfworld_agent_takes_the_object_its_task_names_where_the_untrained_model_does_not() -> None:
    if not (default_model_dir() / "config.json").is_file():
        pytest.skip("default model not prepared (agentrl model default)")
    trained, untrained = _takes_the_task_object("alfworld-agent"), _takes_the_task_object("default")
    assert trained >= 10 and trained >= untrained + 4, (trained, untrained)
