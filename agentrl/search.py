"""Step-level beam search guided by the critic (OREO's test-time search for math).

Each beam is an environment at some state plus the policy's chat so far. One search step:

1. every unfinished beam samples ``B`` next steps from the policy (one generator call, ``n = B``);
2. all ``B x B`` candidates are scored by the critic in one batched call (``V`` after the step);
3. the ``B`` best of {finished beams, new expansions} survive, ties to the earlier one; each surviving
   expansion takes its step in its own copy of the parent's environment.

The search stops when every surviving beam has finished (the env terminated it: a final answer) or after
``max_steps``; the final pick is the finished beam with the highest value (else the best unfinished one).
Environments are copied with ``copy.deepcopy``; an env that cannot be copied is rebuilt by ``make_env`` and
replayed from its reset, so the same code serves any step-segmented Gymnasium task.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentrl.policies.base import Context, Decision
from agentrl.policies.best_of_k import ActionScorer, sample_candidates
from agentrl.types import Candidate, Step


@dataclass
class Beam:
    """One partial solution: its env, the policy's chat, the steps taken and the critic's latest value."""

    env: Any
    context: Context
    steps: list[Step] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    value: float = float("-inf")
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    """The chosen beam and search statistics."""

    best: Beam
    finished: int
    expansions: int
    search_steps: int


class _Cloner:
    """Copies envs with ``copy.deepcopy``; falls back to rebuild + reset + replay when that fails."""

    def __init__(self, make_env: Callable[[], Any] | None, reset_kwargs: dict[str, Any]):
        self.make_env = make_env
        self.reset_kwargs = reset_kwargs
        self.replay = False

    def __call__(self, beam: Beam) -> Any:
        if not self.replay:
            try:
                return copy.deepcopy(beam.env)
            except Exception:  # noqa: BLE001 - any copy failure means: replay instead
                if self.make_env is None:
                    raise
                self.replay = True
        env = self.make_env()  # type: ignore[misc]
        env.reset(**self.reset_kwargs)
        for action in beam.actions:
            env.step(action)
        return env


def beam_search(
    env: Any,
    policy: Any,
    scorer: ActionScorer,
    *,
    width: int,
    max_steps: int,
    reset_kwargs: dict[str, Any] | None = None,
    env_kind: str = "math",
    make_env: Callable[[], Any] | None = None,
    cache_prefix: str = "beam",
) -> SearchResult:
    """Runs one task's step-level beam search.

    Args:
        env: a Gymnasium env (reset here with ``reset_kwargs``); its copies hold the beams' states.
        policy: the sampling policy (``begin``/``observe`` build the chat; candidates come from
            :func:`~agentrl.policies.best_of_k.sample_candidates`).
        scorer: critic values of candidates (one batched call per search step).
        width: ``B``: beams kept and samples per beam per step.
        max_steps: search steps at most (each beam takes at most this many env steps).
        reset_kwargs: ``env.reset(**reset_kwargs)``, e.g. ``{"seed": 0, "options": {"task_id": ...}}``.
        env_kind: prompt kind for the policy.
        make_env: rebuilds the env when it cannot be deep-copied (then beams are replayed from the reset).
        cache_prefix: prefix of the generator cache keys of the beams (one per beam rank).

    Returns:
        The best beam by value and counters.
    """
    if width < 1 or max_steps < 1:
        raise ValueError(f"beam search needs width >= 1 and max_steps >= 1, got {width}, {max_steps}")
    reset_kwargs = dict(reset_kwargs or {})
    observation, info = env.reset(**reset_kwargs)
    root = Beam(env=env, context=policy.begin(0, observation, info, env_kind), info=info)
    root.context.memory["cache_key"] = f"{cache_prefix}/0"
    clone = _Cloner(make_env, reset_kwargs)
    beams = [root]
    expansions = steps = 0
    for _ in range(max_steps):
        active = [b for b in beams if not b.done]
        if not active:
            break
        steps += 1
        proposals: list[list[Decision]] = sample_candidates(policy, [b.context for b in active], width, call=steps - 1)
        values = scorer.score([b.context for b in active], proposals)  # all B x B candidates at once
        expansions += sum(len(p) for p in proposals)
        # (value, order, parent index or None for a finished beam, decision)
        pool: list[tuple[float, int, Beam, Decision | None, list[Candidate]]] = []
        order = 0
        for beam in beams:
            if beam.done:
                pool.append((beam.value, order, beam, None, []))
                order += 1
        for beam, decisions, vals in zip(active, proposals, values, strict=True):
            recorded = [Candidate(d.action, float(v), d.raw, d.thought) for d, v in zip(decisions, vals, strict=True)]
            for decision, value in zip(decisions, vals, strict=True):
                pool.append((float(value), order, beam, decision, recorded))
                order += 1
        pool.sort(key=lambda item: (-item[0], item[1]))
        survivors: list[Beam] = []
        for rank, (value, _, parent, decision, recorded) in enumerate(pool[:width]):
            if decision is None:
                survivors.append(parent)
                continue
            survivors.append(_expand(parent, decision, value, recorded, clone, policy, f"{cache_prefix}/{rank}"))
        beams = survivors
    finished = [b for b in beams if b.done]
    best = max(finished or beams, key=lambda b: b.value)
    return SearchResult(best=best, finished=len(finished), expansions=expansions, search_steps=steps)


def _expand(parent: Beam, decision: Decision, value: float, recorded: list[Candidate], clone: _Cloner,
            policy: Any, cache_key: str) -> Beam:
    """A child beam: the parent's env copy and chat, plus one step."""
    env = clone(parent)
    context = copy.deepcopy(parent.context)
    context.memory["cache_key"] = cache_key
    observation, reward, terminated, truncated, info = env.step(decision.action)
    step = Step(observation=parent.context.observation, action=decision.action, thought=decision.thought,
                reward=float(reward), value=value, candidates=recorded, valid=decision.valid)
    policy.observe(context, decision, observation, info)
    return Beam(env=env, context=context, steps=[*parent.steps, step], actions=[*parent.actions, decision.action],
                value=value, reward=parent.reward + float(reward), done=bool(terminated or truncated), info=info)
