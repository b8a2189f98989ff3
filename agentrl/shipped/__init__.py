"""Agents the package ships: small trained checkpoints loaded by name, like ``--model alfworld-agent``.

Each one is a folder next to this file holding a LoRA adapter on ``default`` (SmolLM2-135M-Instruct, which the
package converts locally) in bf16, its ``agent_config.json`` (how it is prompted) and a ``README.md`` that gives
the ``agentrl`` commands that made it, from generated *train* tasks only, and what it scored. ``agentrl model
pack`` writes such a folder from the ``OUT/policy_lora`` of an ``agentrl learn --lora`` run.
"""

from __future__ import annotations

from pathlib import Path

# name -> what it is; the folder of the same name lies next to this file
SHIPPED_AGENTS = {
    "alfworld-agent": "ALFWorld household agent: SmolLM2-135M-Instruct + LoRA r16, SFT on 600 expert demonstrations",
}


def shipped_dir(name: str) -> Path | None:
    """The folder of the shipped agent ``name``; ``None`` when ``name`` is not one."""
    if name not in SHIPPED_AGENTS:
        return None
    return Path(__file__).parent / name
