"""Critic-guided search at test time: step-level beam search (OREO's, for math) and best-of-N over solutions.

Each beam is an environment at some state plus the policy's chat so far. One search step:

1. every unfinished beam samples ``B`` next steps from the policy (one generator call, ``n = B``);
2. identical steps sampled for one beam are merged (case and whitespace aside, the first sample's text kept), so
   each distinct candidate is scored once and can survive once: a beam's ``B`` samples never fill several beams
   with the same state;
3. all distinct candidates (at most ``B x B``) are scored by the critic in one batched call (``V`` after the step);
4. the ``B`` best of {finished beams, new expansions} survive, ties to the earlier one; each surviving
   expansion takes its step in its own copy of the parent's environment.

"Best" is the critic's ``V`` after the step (the paper). With ``prior_weight`` ``w > 0`` it is
``V + w * sum over the beam's steps of log(n_i / B)``, where ``n_i`` of its parent's ``B`` samples were step ``i``:
the sampling policy's probability of the path, estimated by its samples, weighted as a KL-regularised policy
weighs its reference (the mode of ``pi* ~ pi_ref * exp(Q / beta)`` maximises ``Q + beta * log pi_ref``, so ``w``
plays ``beta``). With ``prior_by="logprob"`` the path's prior is its exact ``w * sum log pi(step_i | prefix)``
instead (the policy's own log-prob of each step at temperature 1, as the backend reports it), not its sample-count
estimate. Merging duplicates (2.) makes every distinct step one candidate, so without it a critic that
cannot tell steps apart picks among distinct strings as if uniformly, and the one right step, sampled often,
loses to the many wrong ones sampled once each (bench/math_mini/RESULTS.md).

Every step of a beam records its parent's distinct candidates (``Step.candidates``) with their value, how many of
the ``B`` samples each one was (``Candidate.samples``) and whether it survived the step's top-``B`` cut
(``Candidate.kept``), so ``agentrl replay`` shows the choices the search made along the chosen beam.

The search stops when every surviving beam has finished (the env terminated it: a final answer) or after
``max_steps``; the final pick is the finished beam with the highest value (else the best unfinished one).
Environments are copied with ``copy.deepcopy``; an env that cannot be copied is rebuilt by ``make_env`` and
replayed from its reset, so the same code serves any step-segmented Gymnasium task.

Best-of-N, the simpler baseline, searches over whole solutions: the policy samples ``N`` complete episodes of a
task (the rollout engine does, see :func:`agentrl.evaluate.best_of_n_evaluate`); :func:`score_solutions` reads the
critic at each one's final afterstate (the end-of-turn token of its last assistant turn,
:func:`agentrl.data.encode_after_action`, through the same scorer beam search uses) and :func:`best_of_n` keeps
the highest-valued one, recording every solution's value in its ``meta["solutions"]`` for ``agentrl replay``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrl.policies.base import Context, Decision
from agentrl.policies.best_of_k import ActionScorer, sample_candidates
from agentrl.policies.scoring import normalize_action
from agentrl.types import BEAM_PRIORS, Candidate, Episode, Step


@dataclass
class Beam:
    """One partial solution: its env, the policy's chat, the steps taken and the critic's latest value."""

    env: Any
    context: Context
    steps: list[Step] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    value: float = float("-inf")
    prior: float = 0.0  # prior_weight * sum of log(samples / B) over the steps taken (0 at prior_weight 0)
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """What the search ranks beams by: the critic's value plus the path's prior (module docstring)."""
        return self.value + self.prior


@dataclass
class SearchResult:
    """The chosen beam and search statistics."""

    best: Beam
    finished: int
    expansions: int  # distinct candidates scored
    search_steps: int
    samples: int = 0  # steps sampled (``expansions`` of them were distinct within their beam)


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


@dataclass(frozen=True)
class SearchTask:
    """One task to search: how to reset an env to it, and the prefix of its beams' generator cache keys."""

    reset_kwargs: dict[str, Any] = field(default_factory=dict)
    cache_prefix: str = "beam"


class _TaskSearch:
    """One task's search in progress: its beams and counters (:func:`beam_search_many` advances it)."""

    def __init__(self, env: Any, task: SearchTask, policy: Any, env_kind: str, make_env: Callable[[], Any] | None):
        observation, info = env.reset(**task.reset_kwargs)
        root = Beam(env=env, context=policy.begin(0, observation, info, env_kind), info=info)
        root.context.memory["cache_key"] = f"{task.cache_prefix}/0"
        self.env, self.task, self.beams = env, task, [root]
        self.clone = _Cloner(make_env, dict(task.reset_kwargs))
        self.expansions = self.steps = self.samples = 0

    def active(self) -> list[Beam]:
        return [b for b in self.beams if not b.done]

    def advance(self, active: list[Beam], proposals: list[list[tuple[Decision, int]]], values: list[list[float]],
                width: int, policy: Any, prior_weight: float, prior_by: str = "samples") -> None:
        """One search step of this task, given its active beams' distinct samples (:func:`distinct`) and their
        values."""
        self.steps += 1
        self.samples += sum(n for p in proposals for _, n in p)
        self.expansions += sum(len(p) for p in proposals)
        self.beams = _select(self.beams, active, proposals, values, width, self.clone, policy,
                             self.task.cache_prefix, prior_weight, prior_by)  # fmt: skip

    def result(self) -> SearchResult:
        finished = [b for b in self.beams if b.done]
        best = max(finished or self.beams, key=lambda b: b.score)
        return SearchResult(best=best, finished=len(finished), expansions=self.expansions, search_steps=self.steps,
                            samples=self.samples)  # fmt: skip


def beam_search_many(
    envs: Sequence[Any],
    tasks: Iterable[SearchTask],
    policy: Any,
    scorer: ActionScorer,
    *,
    width: int,
    max_steps: int,
    env_kind: str = "math",
    make_env: Callable[[], Any] | None = None,
    prior_weight: float = 0.0,
    prior_by: str = "samples",
) -> Iterator[tuple[int, SearchResult]]:
    """Searches ``tasks``, ``len(envs)`` at a time, sharing each policy and critic call among them.

    Every round, the unfinished beams of all tasks in flight sample their ``B`` next steps in one generator
    call and all their distinct steps are scored in one critic call; each task then keeps its own top ``B``
    (:func:`beam_search`'s rules, per task). A finished task hands its env to the next task. Batching pays
    where a forward's cost grows slower than its rows (a GPU); on this project's CPUs a few-M model's forward
    is compute-bound and 8 tasks together ran at 0.94-1.11x the speed of one at a time (bench/beam_batching.py).

    A round's samples are seeded by the search step of the oldest task in flight (``call``), so with one env
    each task samples exactly as :func:`beam_search` alone would, and a rerun over the same tasks with the same
    number of envs repeats exactly; another number of envs batches, and so samples, differently.

    Args:
        envs: the Gymnasium envs the tasks in flight run in (each task resets one; beams copy it).
        tasks: what to search, in order.
        policy, scorer, width, max_steps, env_kind, make_env, prior_weight, prior_by: as :func:`beam_search`.

    Yields:
        ``(index in tasks, result)`` as each task finishes (all of its beams done, or ``max_steps`` rounds).
    """
    if width < 1 or max_steps < 1:
        raise ValueError(f"beam search needs width >= 1 and max_steps >= 1, got {width}, {max_steps}")
    if prior_weight < 0:
        raise ValueError(f"beam search needs prior_weight >= 0, got {prior_weight}")
    if prior_by not in BEAM_PRIORS:
        raise ValueError(f"beam search prior_by must be one of {', '.join(BEAM_PRIORS)}, got {prior_by!r}")
    if not envs:
        raise ValueError("beam search needs at least one env")
    pending = iter(enumerate(tasks))
    free, running = list(envs), []
    while True:
        while free and (nxt := next(pending, None)) is not None:
            running.append((nxt[0], _TaskSearch(free.pop(0), nxt[1], policy, env_kind, make_env)))
        if not running:
            return
        fronts = [search.active() for _, search in running]
        contexts = [b.context for front in fronts for b in front]
        sampled = sample_candidates(policy, contexts, width, call=running[0][1].steps, distinct=False)
        proposals = [distinct(p) for p in sampled]
        values = scorer.score(contexts, [[d for d, _ in p] for p in proposals])  # all tasks' candidates at once
        start, still = 0, []
        for (index, search), front in zip(running, fronts, strict=True):
            end = start + len(front)
            search.advance(front, proposals[start:end], values[start:end], width, policy, prior_weight, prior_by)
            start = end
            if search.steps >= max_steps or not search.active():
                free.append(search.env)
                yield index, search.result()
            else:
                still.append((index, search))
        running = still


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
    prior_weight: float = 0.0,
    prior_by: str = "samples",
) -> SearchResult:
    """Runs one task's step-level beam search (:func:`beam_search_many` with one task).

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
        prior_weight: ``w`` of the ranking score ``V + w * sum log(n / B)`` (module docstring); 0 ranks by ``V``.
        prior_by: ``samples`` (``log(n / B)``, the policy's vote) or ``logprob`` (its exact ``log pi`` per step).

    Returns:
        The best beam by value and counters.
    """
    task = SearchTask(dict(reset_kwargs or {}), cache_prefix)
    ((_, result),) = beam_search_many([env], [task], policy, scorer, width=width, max_steps=max_steps,
                                      env_kind=env_kind, make_env=make_env, prior_weight=prior_weight,
                                      prior_by=prior_by)
    return result


def _step_prior(decision: Decision, samples: int, drawn: int, prior_by: str) -> float:
    """One step's ``log pi`` as the prior counts it: ``log(samples / drawn)`` or the policy's reported log-prob."""
    if prior_by == "samples":
        return math.log(samples / drawn)
    if decision.logprob is None:
        raise ValueError("beam prior by logprob: the backend reported no log-prob for the sampled step "
                         "(the transformers, vLLM and OpenAI-compatible backends do)")
    return float(decision.logprob)


def distinct(decisions: list[Decision]) -> list[tuple[Decision, int]]:
    """The distinct steps among one beam's samples (first-sampled order) and how many samples each one was.

    Steps are the same when their actions are (:func:`~agentrl.policies.scoring.normalize_action`: case and
    whitespace do not make a new step); the first sample's text stands for all of them.
    """
    first: dict[str, int] = {}
    out: list[tuple[Decision, int]] = []
    for decision in decisions:
        key = normalize_action(decision.action)
        if key in first:
            kept, count = out[first[key]]
            out[first[key]] = (kept, count + 1)
        else:
            first[key] = len(out)
            out.append((decision, 1))
    return out


def _select(beams: list[Beam], active: list[Beam], proposals: list[list[tuple[Decision, int]]],
            values: list[list[float]], width: int, clone: _Cloner, policy: Any, cache_prefix: str,
            prior_weight: float = 0.0, prior_by: str = "samples") -> list[Beam]:
    """The ``width`` best of {finished beams, scored expansions} by ``V + prior`` (ties to the earlier one), expanded.

    Each candidate is recorded once per parent (``Candidate.samples``: how many samples it was; ``value``: the
    critic's ``V``, without the prior); ``kept`` marks the ones that survived the cut.
    """
    # (score, order, parent, decision or None for a finished beam, the parent's candidates, candidate index, prior)
    pool: list[tuple[float, int, Beam, Decision | None, list[Candidate], int, float]] = []
    for beam in beams:
        if beam.done:
            pool.append((beam.score, len(pool), beam, None, [], -1, beam.prior))
    for beam, proposal, vals in zip(active, proposals, values, strict=True):
        if len(vals) != len(proposal):
            raise RuntimeError(f"scorer returned {len(vals)} values for {len(proposal)} candidates")
        recorded = [Candidate(d.action, float(v), d.raw, d.thought, samples=n, kept=False)
                    for (d, n), v in zip(proposal, vals, strict=True)]
        drawn = sum(n for _, n in proposal)  # the parent's samples (B, unless the sampler returned fewer)
        for j, ((decision, n), value) in enumerate(zip(proposal, vals, strict=True)):
            prior = beam.prior + (prior_weight * _step_prior(decision, n, drawn, prior_by) if prior_weight else 0.0)
            pool.append((float(value) + prior, len(pool), beam, decision, recorded, j, prior))
    pool.sort(key=lambda item: (-item[0], item[1]))
    chosen = pool[:width]
    for _, _, _, decision, recorded, j, _ in chosen:
        if decision is not None:
            recorded[j].kept = True
    survivors: list[Beam] = []
    for rank, (_, _, parent, decision, recorded, j, prior) in enumerate(chosen):
        if decision is None:
            survivors.append(parent)
            continue
        child = _expand(parent, decision, recorded[j].value, recorded, clone, policy, f"{cache_prefix}/{rank}")
        child.prior = prior
        survivors.append(child)
    return survivors


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


def final_afterstate(episode: Episode, env_kind: str = "math") -> tuple[Context, Decision] | None:
    """The chat before an episode's last assistant turn and that turn: what the critic scores for the episode.

    ``CriticScorer.score`` renders ``context.messages + [assistant: decision.raw]`` and reads V at its last
    end-of-turn token, the afterstate of the final action (the env's answer after it is not part of it).
    None when the episode has no assistant turn.
    """
    turns = [i for i, m in enumerate(episode.messages) if m.get("role") == "assistant"]
    if not turns:
        return None
    last = turns[-1]
    context = Context(slot=0, messages=[dict(m) for m in episode.messages[:last]], observation="", info={},
                      env_kind=env_kind)
    action = episode.steps[-1].action if episode.steps else episode.messages[last]["content"]
    return context, Decision(action=action, raw=episode.messages[last]["content"])


def score_solutions(episodes: list[Episode], scorer: ActionScorer, env_kind: str = "math") -> list[float | None]:
    """The critic's value at each episode's final afterstate, all in one scoring call (None: an episode that
    ended in an error or has no assistant turn)."""
    reads = [None if e.error else final_afterstate(e, env_kind) for e in episodes]
    present = [r for r in reads if r is not None]
    values = scorer.score([c for c, _ in present], [[d] for _, d in present]) if present else []
    found = iter(values)
    return [None if r is None else float(next(found)[0]) for r in reads]


def best_of_n(episodes: list[Episode], values: list[float | None], **meta: Any) -> Episode:
    """The highest-valued of a task's sampled solutions, recording all of them.

    Ranked by value alone, ties to the earlier sample; solutions without a value (errors) only when nothing
    else is there. Whether an episode ended is not used: in some envs only a success ends one early.

    Args:
        episodes: the task's ``N`` solutions, in sample order.
        values: their values (:func:`score_solutions`).
        **meta: added to the chosen episode's ``meta`` (model, critic, ...).

    Returns:
        A copy of the chosen episode: its last step's ``value`` is its final value; ``meta`` gains ``best_of_n``
        (N), ``chosen`` (its sample index), ``value`` and ``solutions``: per sample ``{sample, value, success,
        reward, steps, final, error, chosen}`` (``final``: its last action).
    """
    if not episodes or len(values) != len(episodes):
        raise ValueError(f"best-of-N needs one value per solution, got {len(values)} for {len(episodes)}")
    best = max(range(len(episodes)), key=lambda i: (values[i] is not None, values[i] or 0.0, -i))
    chosen = copy.deepcopy(episodes[best])
    if chosen.steps and values[best] is not None:
        chosen.steps[-1].value = values[best]
    solutions = [
        {"sample": e.meta.get("sample", i), "value": v, "success": e.success, "reward": e.reward,
         "steps": e.num_steps, "final": e.steps[-1].action if e.steps else "", "error": e.error, "chosen": i == best}
        for i, (e, v) in enumerate(zip(episodes, values, strict=True))
    ]  # fmt: skip
    chosen.meta = {**chosen.meta, **meta, "best_of_n": len(episodes), "chosen": solutions[best]["sample"],
                   "value": values[best], "solutions": solutions}
    return chosen
