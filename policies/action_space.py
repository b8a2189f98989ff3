"""The action space of a text-game agent: free text, or one of the env's admissible commands.

With ``action_space="admissible"`` the command after ``Action:`` is one of ``info["admissible_actions"]``: the
thought (if the agent writes one) is generated freely up to ``Action:``, then the generator picks the command
among the admissible ones (``Request.choices``: the transformers backend scores every command on the carried
KV cache, vLLM and OpenAI-compatible servers use their guided-choice parameters). With thought-free turns only
the command is chosen. Commands are ranked by ``Sampling.choice_score``: the length-normalised log-prob of the
command and the end of the turn by default (it doubled expert-action accuracy over free text on the project's
ALFWorld agents, where the summed log-prob favours short commands), or the summed log-prob.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from agentrl.backends.base import Generator, Request, Sampling
from agentrl.policies.base import Context, Decision
from agentrl.policies.prompts import parse_react, window

ACTION_SPACES = ("free", "admissible")
ACTION_MARKER = "Action:"


def check_action_space(action_space: str) -> str:
    if action_space not in ACTION_SPACES:
        raise ValueError(f"action_space must be one of {', '.join(ACTION_SPACES)}, got {action_space!r}")
    return action_space


def admissible_commands(info: dict[str, Any], env_kind: str) -> list[str]:
    """The env's admissible commands for this state.

    Raises:
        LookupError: the env lists none (math problems, an env without ``info["admissible_actions"]``).
    """
    commands = info.get("admissible_actions")
    if not commands:
        raise LookupError(
            f"--action-space admissible: the {env_kind} env lists no info['admissible_actions'] "
            f"(task {info.get('task_id')!r}); use --action-space free"
        )
    return [str(c) for c in commands]


def partial_turn(thought_text: str) -> str:
    """The assistant turn up to the command: the generated thought (if any), then ``"Action: "``."""
    thought = thought_text.rstrip()
    return f"{thought}\n{ACTION_MARKER} " if thought.strip() else f"{ACTION_MARKER} "


def choose_admissible(
    generator: Generator,
    sampling: Sampling,
    contexts: list[Context],
    n: int,
    *,
    history: int | None = None,
    thoughts: bool = True,
) -> list[list[Decision]]:
    """Up to ``n`` distinct admissible commands per context, best first, as decisions with their log-probs.

    Args:
        generator: the backend; it must honour ``Request.choices``.
        sampling: the policy's decoding for this call (stops, seed, ``choice_score``, temperature).
        contexts: the episodes to act in (their ``info`` lists the admissible commands).
        n: commands per context (fewer where fewer are admissible).
        history: prompt window (see :func:`agentrl.policies.prompts.window`).
        thoughts: generate a thought up to ``Action:`` first (one free generate call), else choose at once.
    """
    requests = [
        Request(messages=window(c.messages, history), cache_key=c.memory.get("cache_key")) for c in contexts
    ]
    partials, thought_tokens = [f"{ACTION_MARKER} "] * len(contexts), [0] * len(contexts)
    if thoughts:
        stops = [*sampling.stop, ACTION_MARKER]
        free = generator.generate(requests, dataclasses.replace(sampling, n=1, stop=stops))
        partials = [partial_turn(group[0].text) for group in free]
        thought_tokens = [group[0].num_tokens for group in free]
    constrained = [
        Request(
            messages=[*r.messages, {"role": "assistant", "content": partial}],
            cache_key=r.cache_key,
            choices=admissible_commands(c.info, c.env_kind),
        )
        for r, c, partial in zip(requests, contexts, partials, strict=True)
    ]
    outputs = generator.generate(constrained, dataclasses.replace(sampling, n=n, stop=[]))
    decisions = []
    for ctx, partial, spent, group in zip(contexts, partials, thought_tokens, outputs, strict=True):
        decisions.append([])
        for completion in group:
            raw = partial + completion.text
            thought, _, _ = parse_react(raw, ctx.env_kind)
            decisions[-1].append(
                Decision(
                    action=completion.text,
                    raw=raw,
                    thought=thought,
                    new_tokens=spent + completion.num_tokens,
                    logprob=completion.logprob,
                    logprob_tokens=completion.num_tokens,
                )
            )
    return decisions
