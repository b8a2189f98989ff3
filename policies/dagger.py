"""DAgger data: the learner acts (or, with probability beta, the expert), the expert labels every visited state.

Ross, Gordon and Bagnell (2011): train on the states the learner's own policy reaches, labelled by the expert.
Per step, a coin seeded by the episode id chooses who acts: the expert with probability ``beta``, else the
learner (a :class:`~agentrl.policies.react.ReActPolicy`). Whoever acts, the expert's action for the state is
the label. Two chats are kept:

* the learner's own chat (its prompt: what it actually did, what the env answered), which it generates from;
* the *label chat*, whose assistant turns are the expert's labels at the states the learner visited. This is
  the episode's ``messages``, so SFT on DAgger episodes is DAgger's aggregated dataset, read by the learner
  as it reads any demonstration.

Each step records what was executed (``action``, ``thought``, ``valid``: the learner's decision or the
expert's) and the expert's ``label``; a step whose learner-chosen action differs from its label is a
correction, the valuable part of the data. ``meta["dagger"]`` counts them per episode. An expert that cannot
label a state (``info["expert_action"]`` is None: math's reference solution once the episode left it) ends the
label chat there; the steps go on recording what was executed, with ``label`` None.

In the label chat, an env answer follows the label although it answers the executed action (a label "take
mug 1" may be followed by "You arrive at desk 2."): the observations are the learner's, the actions the
expert's. The reward and success belong to the executed actions, not to the labels, so DAgger episodes are
SFT data, not OREO/DPO data.

Beta schedules (``beta_at``), for round ``r`` (1 = the first round after the demonstrations):
``B`` or ``constant:B`` -> B; ``linear:N`` -> max(0, 1 - r / N); ``exp:D`` -> D ** r.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from agentrl.policies.base import Context, Decision, Policy
from agentrl.policies.expert import ExpertPolicy, MissingExpertError
from agentrl.policies.prompts import record_turn
from agentrl.policies.react import ReActPolicy

SCHEDULES = ("constant", "linear", "exp")


def beta_at(schedule: str, round_index: int) -> float:
    """The expert's share of the steps in DAgger round ``round_index`` (>= 0) under ``schedule``.

    Raises:
        ValueError: an unknown schedule or a value out of range (naming the schedule).
    """
    kind, sep, arg = str(schedule).strip().partition(":")
    if not sep:
        kind, arg = "constant", kind
    try:
        value = float(arg)
    except ValueError:
        value = float("nan")
    if kind not in SCHEDULES or value != value:  # nan: not a number
        raise ValueError(
            f"beta schedule {schedule!r}: expected B, constant:B, linear:N or exp:D (e.g. 0, linear:4, exp:0.5)"
        )
    if kind == "linear":
        if value <= 0:
            raise ValueError(f"beta schedule {schedule!r}: linear:N needs N > 0 rounds")
        return max(0.0, 1.0 - round_index / value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"beta schedule {schedule!r}: {kind} needs a value in [0, 1]")
    return value if kind == "constant" else value**round_index


def _same(a: str, b: str | None) -> bool:
    return b is not None and " ".join(a.lower().split()) == " ".join(b.lower().split())


class DAggerPolicy:
    """Acts with ``learner`` (with probability ``beta`` the expert), records the expert's labels.

    Args:
        learner: the model policy being trained (its ``begin``/``act``/``observe``/``end``).
        beta: probability that the expert acts at a step (0: the learner always acts).
        seed: seeds the per-episode coin (with the episode id), so a rerun flips the same coins.
        example: in-context example in the label chat's system prompt.
        thoughts: the label turns carry the expert's templated ``Think:`` line.
    """

    name = "dagger"

    def __init__(self, learner: Policy, beta: float, *, seed: int = 0, example: bool = True, thoughts: bool = True):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.learner = learner
        self.expert = ExpertPolicy(example=example, thoughts=thoughts)
        self.beta = beta
        self.seed = seed

    def begin(self, slot: int, observation: str, info: dict[str, Any], env_kind: str) -> Context:
        if "expert_action" not in info:
            raise MissingExpertError(
                f"DAgger needs the expert's labels: the {env_kind} env gives no info['expert_action'] for task "
                f"{info.get('task_id')!r}"
            )
        labels = self.expert.begin(slot, observation, info, env_kind)
        labels.memory["learner"] = self.learner.begin(slot, observation, info, env_kind)
        labels.memory["dagger"] = {"beta": self.beta, "expert_steps": 0, "learner_steps": 0, "corrections": 0}
        return labels

    def _expert_acts(self, ctx: Context) -> bool:
        if "coin" not in ctx.memory:
            name = str(ctx.memory.get("episode_id", ctx.memory["learner"].memory.get("cache_key", ctx.slot)))
            ctx.memory["coin"] = random.Random(zlib.crc32(f"{self.seed}/dagger/{name}".encode()))
        return ctx.memory["coin"].random() < self.beta

    def act(self, contexts: list[Context]) -> list[Decision]:
        """One expert label per context; one batched learner call for the contexts whose coin says learner."""
        labels = self.expert.act(contexts)
        learner_turn = [not self._expert_acts(ctx) for ctx in contexts]
        chosen = [i for i, mine in enumerate(learner_turn) if mine]
        own = self.learner.act([contexts[i].memory["learner"] for i in chosen]) if chosen else []
        executed = list(labels)
        for i, decision in zip(chosen, own, strict=True):
            executed[i] = decision
        out = []
        for ctx, label, decision, mine in zip(contexts, labels, executed, learner_turn, strict=True):
            counts = ctx.memory["dagger"]
            counts["learner_steps" if mine else "expert_steps"] += 1
            label_action = label.action if label.valid else None
            counts["corrections"] += int(mine and label_action is not None and not _same(decision.action, label_action))
            ctx.memory["label_turn"] = label
            out.append(Decision(action=decision.action, raw=decision.raw, thought=decision.thought,
                                valid=decision.valid, value=decision.value, candidates=decision.candidates,
                                new_tokens=decision.new_tokens, label=label_action))
        return out

    def observe(self, context: Context, decision: Decision, observation: str, info: dict[str, Any]) -> None:
        """The learner's chat gets what was executed; the label chat gets the expert's label, and ends at the
        first state the expert cannot label (nothing there to learn; later labels stay in the steps)."""
        self.learner.observe(context.memory["learner"], decision, observation, info)
        label = context.memory.pop("label_turn")
        if decision.label is None:
            context.memory["labels_ended"] = True
        if context.memory.get("labels_ended"):
            context.observation, context.info = observation, info
        else:
            record_turn(context, label, observation, info)

    def end(self, context: Context) -> None:
        self.learner.end(context.memory["learner"])

    def episode_meta(self, context: Context) -> dict[str, Any]:
        """``{"dagger": {"beta", "expert_steps", "learner_steps", "corrections"}}`` for the episode's meta."""
        return {"dagger": dict(context.memory["dagger"])}


def make(*, generator: Any, sampling: Any = None, beta: float | None = None, seed: int = 0,
         **react: Any) -> DAggerPolicy:
    """``make_policy("dagger", ...)``: a ReAct learner on ``generator`` (free text or choosing among the
    admissible commands, per ``action_space``), the expert acting with probability ``beta``.

    ``react`` holds the learner's options (``history``, ``example``, ``thoughts``, ``action_space``, ...); the expert
    writes its labels in the same format (``example``, ``thoughts``).
    """
    if beta is None:
        raise ValueError("policy dagger needs beta (the expert's share of the steps; --beta-schedule)")
    learner = ReActPolicy(generator, sampling, **react)
    return DAggerPolicy(learner, beta, seed=seed, example=react.get("example", True),
                        thoughts=react.get("thoughts", True))
