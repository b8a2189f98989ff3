"""Best-of-K: K candidate actions from a policy, scored by a critic; act on the best.

Over an admissible action space (``action_space="admissible"``) the candidates are the policy's top-K distinct
admissible commands after one (greedy) thought, ranked in the same pass that picks a single command -- no
sampling -- and the controller may rank by ``V + c * log pi`` (``logprob_weight``). Otherwise:
for every env the wrapped (sampling) policy proposes K assistant turns; candidates are deduplicated by action,
then *all* candidates of *all* envs are scored by one :class:`~agentrl.policies.scoring.ActionScorer` call
(batched critic forwards, see :class:`~agentrl.policies.scoring.CriticScorer`), and the highest-valued one is taken. Ties are broken deterministically: among equal values the candidate
sampled first wins (sampling is seeded, so reruns agree). The decision records every candidate with its
value (``Decision.candidates``) and the chosen value (``Decision.value``) for replay and analysis.

Scorers (the learned critic, an oracle) live in :mod:`agentrl.policies.scoring` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentrl.backends.base import Sampling
from agentrl.policies.base import Context, Decision, Policy
from agentrl.policies.react import ReActPolicy
from agentrl.policies.scoring import (
    ActionScorer,
    CriticScorer,
    OracleScorer,
    end_of_turn_id,
    expert_agreement_plan,
    normalize_action,
)
from agentrl.types import Candidate

__all__ = [
    "ActionScorer",
    "BestOfK",
    "CandidateSampler",
    "CriticScorer",
    "OracleScorer",
    "dedupe",
    "end_of_turn_id",
    "expert_agreement_plan",
    "make",
    "sample_candidates",
]


@runtime_checkable
class CandidateSampler(Protocol):
    """A policy that can propose ``k`` decisions per context in one batched call (e.g. generator ``n=k``)."""

    def propose(self, contexts: list[Context], k: int) -> list[list[Decision]]: ...


def sample_candidates(
    policy: Policy, contexts: list[Context], k: int, call: int = 0, distinct: bool = True
) -> list[list[Decision]]:
    """``k`` sampled decisions per context from ``policy``, deduplicated by action (first-sampled order).

    Uses the policy's own ``propose(contexts, k)`` if it has one, one ``n=k`` generator call for a
    :class:`~agentrl.policies.react.ReActPolicy`, else ``k`` calls of ``act``. ``call`` (the caller's step
    counter) offsets a fixed sampling seed, so successive steps draw fresh samples yet reruns repeat exactly.
    """
    if isinstance(policy, CandidateSampler):
        samples = policy.propose(contexts, k)
    elif isinstance(policy, ReActPolicy):
        samples = policy.sample(contexts, k, seed_offset=call)
    else:
        rounds = [policy.act(contexts) for _ in range(k)]
        samples = [[r[i] for r in rounds] for i in range(len(contexts))]
    if len(samples) != len(contexts) or any(not s for s in samples):
        raise RuntimeError(f"{type(policy).__name__} proposed no candidate for some context")
    return [dedupe(s) for s in samples] if distinct else [list(s) for s in samples]


def dedupe(decisions: Sequence[Decision]) -> list[Decision]:
    """Candidates with distinct actions, in first-sampled order (whitespace and case do not make a new action)."""
    seen: set[str] = set()
    out = []
    for d in decisions:
        key = normalize_action(d.action)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


@dataclass
class BestOfK:
    """Wraps a sampling policy: K samples per env, one batched scoring call, act on the highest value.

    Args:
        policy: the sampling policy (temperature > 0). If it has ``propose(contexts, k)`` (one generator call
            with ``n=k``), that is used; otherwise ``act`` is called ``k`` times.
        scorer: values of candidates (:class:`CriticScorer` or :class:`OracleScorer`).
        k: samples per env and step (K=1 scores the single sample: same actions as the policy, plus values).
        logprob_weight: ``c`` in ``score = V + c * log pi`` (``log pi``: the policy's log-prob of the command, as
            its action space ranks it: length-normalised by default); needs candidates with log-probs (an
            admissible action space). 0: the critic alone decides.
    """

    policy: Policy
    scorer: ActionScorer
    k: int = 5
    name: str = "best_of_k"
    logprob_weight: float = 0.0

    def __post_init__(self) -> None:
        self._calls = 0
        if self.k < 1:
            raise ValueError(f"best-of-K needs k >= 1, got {self.k}")

    def begin(self, slot: int, observation: str, info: dict[str, Any], env_kind: str) -> Context:
        return self.policy.begin(slot, observation, info, env_kind)

    def observe(self, context: Context, decision: Decision, observation: str, info: dict[str, Any]) -> None:
        self.policy.observe(context, decision, observation, info)

    def end(self, context: Context) -> None:
        """The episode is over: the policy's generator and the critic may drop their cached state."""
        end = getattr(self.policy, "end", None)  # a bare CandidateSampler has no episode state
        if end is not None:
            end(context)
        release = getattr(self.scorer, "release", None)
        key = context.memory.get("cache_key")
        if release is not None and key:
            release(key)

    def candidates(self, contexts: list[Context]) -> list[list[Decision]]:
        """K sampled decisions per context, deduplicated by action."""
        self._calls += 1
        return sample_candidates(self.policy, contexts, self.k, call=self._calls - 1)

    def act(self, contexts: list[Context]) -> list[Decision]:
        if not contexts:
            return []
        candidates = self.candidates(contexts)
        values = self.scorer.score(contexts, candidates)  # one batched call for every env's candidates
        how = getattr(getattr(self.policy, "sampling", None), "choice_score", "mean")
        decisions = []
        for cands, vals in zip(candidates, values, strict=True):
            if len(vals) != len(cands):
                raise RuntimeError(f"scorer returned {len(vals)} values for {len(cands)} candidates")
            scores = self._scores(cands, vals, how)
            # max score; ties -> the earliest candidate (sampled first, or ranked higher by the policy)
            best = max(range(len(cands)), key=lambda j: (scores[j], -j))
            recorded = [
                Candidate(action=c.action, value=float(v), raw=c.raw, thought=c.thought, logprob=c.logprob,
                          tokens=c.logprob_tokens if c.logprob is not None else None,
                          score=s if c.logprob is not None else None)
                for c, v, s in zip(cands, vals, scores, strict=True)
            ]  # fmt: skip
            decisions.append(
                replace(cands[best], value=float(vals[best]), candidates=recorded, new_tokens=_tokens(cands))
            )
        return decisions

    def _scores(self, cands: list[Decision], values: list[float], how: str) -> list[float]:
        """``V + c * log pi`` per candidate (``V`` alone where ``c == 0``)."""
        if not self.logprob_weight:
            return [float(v) for v in values]
        if any(c.logprob is None for c in cands):
            raise ValueError("--logprob-weight needs the policy's log-probs of its candidates: --action-space admissible")
        return [
            float(v) + self.logprob_weight * (c.logprob if how == "sum" else c.logprob / max(1, c.logprob_tokens))
            for c, v in zip(cands, values, strict=True)
        ]


def _tokens(cands: list[Decision]) -> int:
    """Tokens generated for a step's candidates: K samples each cost theirs; the top-K admissible commands share
    one thought (each candidate counts it) and add their scored tokens."""
    if all(c.logprob is not None for c in cands):
        return cands[0].new_tokens - cands[0].logprob_tokens + sum(c.logprob_tokens for c in cands)
    return sum(c.new_tokens for c in cands)


def make(
    *,
    generator: Any,
    sampling: Any = None,
    critic: str | ActionScorer | None = None,
    k: int = 5,
    logprob_weight: float = 0.0,
    tokenizer: Any = None,
    device: str = "cpu",
    dtype: str = "float32",
    **react: Any,
) -> BestOfK:
    """``make_policy("best_of_k", ...)``: a ReAct policy on ``generator`` with K samples scored by ``critic``.

    Args:
        generator: the text generator that samples candidates.
        sampling: its decoding parameters (K > 1 needs ``temperature > 0``, else all samples are equal).
        critic: a critic folder or an :class:`ActionScorer`.
        k: candidates per step.
        logprob_weight: ``c`` in ``score = V + c * log pi`` (admissible action space only).
        tokenizer: the tokenizer the critic reads chats with (default: the generator's).
        device: torch device of the critic.
        dtype: critic dtype.
        **react: the sampling ReAct policy's options (``history``, ``example``, ``thoughts``, ``action_space``:
            ``free`` samples K turns, ``admissible`` takes the policy's top-K distinct admissible commands with no
            sampling needed; ``anti_loop``).
    """
    admissible = react.get("action_space") == "admissible"
    sampling = sampling or Sampling(temperature=0.0 if admissible else 1.0)
    if k > 1 and sampling.temperature <= 0 and not admissible:
        raise ValueError(f"best-of-{k} needs sampling: set a temperature > 0 (got {sampling.temperature})")
    if critic is None:
        raise ValueError("best-of-K needs a critic (--critic DIR)")
    if isinstance(critic, str | Path):
        critic = CriticScorer.from_pretrained(str(critic), tokenizer or getattr(generator, "tokenizer", None),
                                              device=device, dtype=dtype)
    return BestOfK(ReActPolicy(generator, sampling, **react), critic, k=k, logprob_weight=logprob_weight)
