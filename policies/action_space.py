"""The action space of a text-game agent: free text, or one of the env's admissible commands.

With ``action_space="admissible"`` the command after ``Action:`` is one of ``info["admissible_actions"]``: the
thought (if the agent writes one) is generated freely up to ``Action:``, then the generator picks the command
among the admissible ones (``Request.choices``: the transformers backend scores every command on the carried
KV cache, vLLM and OpenAI-compatible servers use their guided-choice parameters). With thought-free turns only
the command is chosen. Commands are ranked by ``Sampling.choice_score``: the length-normalised log-prob of the
command and the end of the turn by default (it doubled expert-action accuracy over free text on the project's
ALFWorld agents, where the summed log-prob favours short commands), or the summed log-prob.

Two helpers around it: :func:`with_admissible_list` writes the admissible commands into the observation the agent
sees (``--list-admissible``, as several agent frameworks prompt), and the anti-loop option (``--anti-loop N``)
masks, for the next ``N`` steps, a command that just produced no change of state (the game answered "Nothing
happens." or repeated the observation it was given); each step records what it masked (``Step.masked``).
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


NOTHING_HAPPENS = "Nothing happens."


def with_admissible_list(observation: str, info: dict[str, Any]) -> str:
    """The observation followed by a line listing the admissible commands (unchanged where the env lists none)."""
    commands = info.get("admissible_actions") or []
    if not commands:
        return observation
    return f"{observation.rstrip()}\nAdmissible commands: {', '.join(str(c) for c in commands)}."


def no_change(before: str, after: str) -> bool:
    """Whether a step changed nothing the agent can see: "Nothing happens.", or the same observation again."""
    text = after.strip()
    return text == NOTHING_HAPPENS or text.startswith(NOTHING_HAPPENS + "\n") or text == before.strip()


def note_outcome(context: Context, action: str, before: str, after: str) -> None:
    """Anti-loop bookkeeping after a step: remembers at which turn ``action`` changed nothing."""
    turn = context.memory.get("turn", 0) + 1
    context.memory["turn"] = turn
    if no_change(before, after):
        context.memory.setdefault("no_change", {})[action] = turn


def masked_commands(context: Context, window: int) -> list[str]:
    """The commands that changed nothing within the last ``window`` turns (none when ``window`` is 0)."""
    if window <= 0:
        return []
    turn = context.memory.get("turn", 0)
    return [a for a, t in context.memory.get("no_change", {}).items() if turn - t < window]


def allowed_commands(context: Context, window: int) -> tuple[list[str], list[str]]:
    """The admissible commands minus the masked ones, and those masked (if every command is masked, none is)."""
    commands = admissible_commands(context.info, context.env_kind)
    masked = set(masked_commands(context, window))
    allowed = [c for c in commands if c not in masked]
    if not allowed:
        return commands, []
    return allowed, [c for c in commands if c in masked]


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
    anti_loop: int = 0,
) -> list[list[Decision]]:
    """Up to ``n`` distinct admissible commands per context, best first, as decisions with their log-probs.

    Args:
        generator: the backend; it must honour ``Request.choices``.
        sampling: the policy's decoding for this call (stops, seed, ``choice_score``, temperature).
        contexts: the episodes to act in (their ``info`` lists the admissible commands).
        n: commands per context (fewer where fewer are admissible).
        history: prompt window (see :func:`agentrl.policies.prompts.window`).
        thoughts: generate a thought up to ``Action:`` first (one free generate call), else choose at once.
        anti_loop: mask commands that changed nothing within this many turns (see :func:`allowed_commands`).
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
    allowed = [allowed_commands(c, anti_loop) for c in contexts]
    constrained = [
        Request(
            messages=[*r.messages, {"role": "assistant", "content": partial}],
            cache_key=r.cache_key,
            choices=commands,
        )
        for r, partial, (commands, _) in zip(requests, partials, allowed, strict=True)
    ]
    outputs = generator.generate(constrained, dataclasses.replace(sampling, n=n, stop=[]))
    decisions = []
    for ctx, partial, spent, group, (_, masked) in zip(contexts, partials, thought_tokens, outputs, allowed,
                                                       strict=True):
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
                    masked=masked or None,
                )
            )
    return decisions
