"""Policies map (observation, info) to an action: ``react`` (LLM), ``expert``, ``random``, ``best_of_k``,
``dagger`` (the LLM acts, the expert labels every state).

``make_policy(name, ...)`` builds one by name; see ``base.py`` for the Protocol they all follow.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from agentrl.policies.base import Context, Decision, Policy
from agentrl.policies.dagger import make as make_dagger
from agentrl.policies.expert import ExpertPolicy
from agentrl.policies.random import RandomPolicy
from agentrl.policies.react import ReActPolicy

POLICIES = ("react", "expert", "random", "best_of_k", "dagger")
MODEL_POLICIES = ("react", "best_of_k", "dagger")  # need a generator (and a model)


def make_policy(
    name: str,
    *,
    generator: Any = None,
    sampling: Any = None,
    history: int | None = None,
    example: bool = True,
    thoughts: bool = True,
    action_space: str = "free",
    anti_loop: int = 0,
    seed: int = 0,
    **kwargs: Any,
) -> Policy:
    """Builds the policy called ``name``.

    Args:
        name: one of :data:`POLICIES`.
        generator: the text generator (required by ``react`` and ``best_of_k``).
        sampling: decoding parameters for model-backed policies.
        history: ``None`` for the full chat, else the number of last turns the prompt keeps.
        example: put the in-context example in the system prompt.
        thoughts: ``Think: ... / Action: ...`` turns; ``False``: thought-free ``Action: ...`` turns.
        action_space: model policies: ``free`` or ``admissible`` (expert and random act admissibly anyway).
        anti_loop: model policies, admissible: mask a command that changed nothing for this many steps.
        seed: seed of the random policy.
        **kwargs: passed on to the policy (e.g. ``critic``/``k`` for ``best_of_k``, ``beta`` for ``dagger``).
    """
    if name not in POLICIES:
        close = difflib.get_close_matches(name, POLICIES, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise ValueError(f"unknown policy `{name}`{hint} (choose from {', '.join(POLICIES)})")
    if name in MODEL_POLICIES and generator is None:
        raise ValueError(f"policy `{name}` needs a model (--model)")
    if name == "expert":
        return ExpertPolicy(example=example, thoughts=thoughts, **kwargs)
    if name == "random":
        return RandomPolicy(seed=seed, example=example, thoughts=thoughts, **kwargs)
    react = {"history": history, "example": example, "thoughts": thoughts, "action_space": action_space,
             "anti_loop": anti_loop}
    if name == "react":
        return ReActPolicy(generator, sampling, **react, **kwargs)
    if name == "dagger":
        return make_dagger(generator=generator, sampling=sampling, seed=seed, **react, **kwargs)
    best_of_k = importlib.import_module("agentrl.policies.best_of_k")  # torch (the critic): only when asked for
    return best_of_k.make(generator=generator, sampling=sampling, **react, **kwargs)


__all__ = ["POLICIES", "Context", "Decision", "Policy", "make_policy"]
