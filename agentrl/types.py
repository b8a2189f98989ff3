"""The trajectory format: the currency between rollout, learn, eval and replay.

One episode per JSONL line (see ``docs/trajectory-format.md``)::

    {"schema": 1, "episode_id": "alfworld/train/pick_...-7/s0", "task_id": ..., "env_id": "agentrl/ALFWorld-v0",
     "split": "train", "task_type": "pick_and_place_simple", "policy": "expert", "success": true, "reward": 1.0,
     "steps": [{"observation": ..., "thought": ..., "action": ..., "reward": 0.0, "value": null,
                "candidates": null, "valid": true}],
     "messages": [{"role": "system", "content": ...}, {"role": "user", ...}, {"role": "assistant", ...}],
     "error": null, "meta": {}}

``steps[i].observation`` is what the agent saw before choosing ``steps[i].action``; ``messages`` is the chat
exactly as the policy saw and produced it (assistant turns are the raw model outputs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


def episode_id(env: str, split: str, task_id: str, sample: int) -> str:
    """Deterministic id of the ``sample``-th episode of a task: reruns use it to skip finished episodes."""
    return f"{env}/{split}/{task_id}/s{sample}"


# What the value-guided beam's prior counts (agentrl.search): the samples' vote, or the policy's exact log-prob.
BEAM_PRIORS = ("samples", "logprob")


@dataclass
class Candidate:
    """One action the controller considered, with the critic's value of taking it.

    Over an admissible action space the candidates are the policy's top-K distinct commands: ``logprob`` is the
    policy's summed log-prob of the command (its ``tokens`` tokens and the end of the turn), and ``score`` what
    the controller ranked by, ``value + c * log pi`` (``log pi`` length-normalised unless ``--choice-score sum``).
    Sampled candidates leave them None (ranked by ``value``). Beam search records ``samples`` (how many of the
    beam's samples were this step: duplicates are merged and scored once) and ``kept`` (whether the candidate
    survived the step's top-B cut, i.e. became a beam); other controllers leave them None.
    """

    action: str
    value: float
    raw: str = ""
    thought: str = ""
    logprob: float | None = None
    tokens: int | None = None
    score: float | None = None
    samples: int | None = None
    kept: bool | None = None


@dataclass
class Step:
    """One agent turn: what it saw, what it thought and did, and what that earned.

    ``masked``: the admissible commands the anti-loop option kept the policy from choosing at this step (they had
    just changed nothing), else None.
    """

    observation: str
    action: str
    thought: str = ""
    reward: float = 0.0
    value: float | None = None
    candidates: list[Candidate] | None = None
    valid: bool = True
    label: str | None = None  # DAgger: the expert's action at this state (``messages`` holds it as the turn)
    masked: list[str] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        data = dict(data)
        if data.get("candidates") is not None:
            data["candidates"] = [Candidate(**c) for c in data["candidates"]]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Episode:
    """One finished (or failed) episode, as written to and read from trajectory JSONL."""

    episode_id: str
    task_id: str
    env_id: str
    split: str
    task_type: str
    policy: str
    success: bool = False
    reward: float = 0.0
    steps: list[Step] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # ``schema`` first so a human reading the file sees the version at the start of each line.
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise ValueError(f"unsupported trajectory schema {schema!r} (this agentrl reads {SCHEMA_VERSION})")
        required = ("episode_id", "task_id", "env_id", "split", "task_type", "policy", "success", "reward")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["steps"] = [Step.from_dict(s) for s in data.get("steps", [])]
        return cls(**values)

    @property
    def num_steps(self) -> int:
        return len(self.steps)
