"""The expert policy: follows ``info["expert_action"]`` and writes ReAct turns, so its episodes are SFT data.

The env supplies the action (ALFWorld's hand-coded expert, a TextWorld game's walkthrough, a math problem's
reference solution split into steps); this policy only adds a short templated thought that says why, in the
same ``Think: ... / Action: ...`` format the ReAct agent is trained to produce. The templated thoughts carry no
information the action does not, so ``thoughts=False`` writes thought-free ``Action: ...`` turns instead.
"""

from __future__ import annotations

import re
from typing import Any

from agentrl.policies.base import Context, Decision
from agentrl.policies.prompts import (
    check_env_kind,
    format_react,
    initial_messages,
    record_turn,
    templated_turn,
)


class MissingExpertError(LookupError):
    """The environment gives no ``info["expert_action"]``."""


_TEMPLATES = [
    (r"go to (.+)", "I go to the {0} to look for what I need."),
    (r"open (.+)", "The {0} is closed; I open it to see inside."),
    (r"close (.+)", "I close the {0}."),
    (r"take (.+) from (.+)", "I found the {0} on the {1}. I take it."),
    (r"move (.+) to (.+)", "I have the {0}; I put it in/on the {1}."),
    (r"clean (.+) with (.+)", "The {0} must be clean: I clean it with the {1}."),
    (r"heat (.+) with (.+)", "The {0} must be hot: I heat it with the {1}."),
    (r"cool (.+) with (.+)", "The {0} must be cool: I cool it with the {1}."),
    (r"use (.+)", "I switch on the {0} to look at the object under its light."),
    (r"examine (.+)", "I examine the {0}."),
    (r"look", "I look around."),
    (r"inventory", "I check what I am carrying."),
]


def expert_thought(action: str, info: dict[str, Any], first: bool) -> str:
    """A short reason for ``action`` (templated per verb); the first turn restates the task."""
    reason = f"Next I {action}."
    for pattern, template in _TEMPLATES:
        match = re.fullmatch(pattern, action.strip(), flags=re.IGNORECASE)
        if match:
            reason = template.format(*match.groups())
            break
    task = str(info.get("task") or "").strip().rstrip(".")
    if first and task:
        return f"My task is to {task[0].lower()}{task[1:]}. {reason}"
    return reason


class ExpertPolicy:
    """Plays ``info["expert_action"]`` (a demonstration); writes the same message format as ReAct.

    Args:
        example: put the in-context example in the system prompt.
        thoughts: write ``Think: ...`` lines (templated); ``False``: ``Action: ...`` turns only.
    """

    name = "expert"

    def __init__(self, example: bool = True, thoughts: bool = True):
        self.example = example
        self.thoughts = thoughts

    def begin(self, slot: int, observation: str, info: dict[str, Any], env_kind: str) -> Context:
        check_env_kind(env_kind)
        if "expert_action" not in info:
            raise MissingExpertError(
                f"the {env_kind} env gives no info['expert_action'] for task {info.get('task_id')!r}; "
                "use --policy react or random"
            )
        messages = initial_messages(env_kind, observation, info, self.example, self.thoughts)
        return Context(slot=slot, messages=messages, observation=observation, info=info, env_kind=env_kind)

    def act(self, contexts: list[Context]) -> list[Decision]:
        decisions = []
        for ctx in contexts:
            action = ctx.info.get("expert_action")
            first = len(ctx.messages) <= 2
            if not action:  # the expert has nothing to say (e.g. the task is already done): a harmless look
                raw = format_react("I am not sure what to do next.", "look", ctx.env_kind, self.thoughts)
                decisions.append(Decision(action="look", raw=raw, thought="", valid=False))
                continue
            action = str(action)
            thought = expert_thought(action, ctx.info, first) if self.thoughts else ""
            decisions.append(templated_turn(thought, action, ctx.env_kind, self.thoughts))
        return decisions

    def end(self, context: Context) -> None:
        """Nothing is kept per episode."""

    def observe(self, context: Context, decision: Decision, observation: str, info: dict[str, Any]) -> None:
        record_turn(context, decision, observation, info)
