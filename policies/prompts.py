"""Prompts and the ReAct output format, per environment kind.

Every policy (LLM, expert, random) writes its assistant turns in one format so that any episode is training
data for the ReAct agent:

* ``alfworld`` / ``textworld``: ``"Think: <reasoning>\\nAction: <command>"``, or with thoughts off just
  ``"Action: <command>"`` (thought-free turns: the system prompt and its example ask for that one line). The
  command is what the env gets.
* ``math``: one reasoning step per assistant turn (a single line); the final step contains ``#### <answer>``.

:func:`parse_react` is deliberately forgiving about case, markdown and quotes, but never guesses: a reply with no
usable ``Action:`` line is sent to the env verbatim and the step is recorded as invalid.
"""

from __future__ import annotations

import re
from typing import Any

from agentrl.policies.base import Decision

ENV_KINDS = ("alfworld", "textworld", "math")

ALFWORLD_COMMANDS = """\
  go to {receptacle}               e.g. go to countertop 1
  open {receptacle}                e.g. open fridge 1
  close {receptacle}
  take {object} from {receptacle}  e.g. take mug 2 from cabinet 3
  move {object} to {receptacle}    e.g. move mug 2 to coffeemachine 1   (this is how you put things down)
  clean {object} with {receptacle} e.g. clean apple 1 with sinkbasin 1
  heat {object} with {receptacle}  e.g. heat egg 1 with microwave 1
  cool {object} with {receptacle}  e.g. cool potato 1 with fridge 1
  use {object}                     e.g. use desklamp 1 (switch a lamp on)
  examine {object or receptacle}
  look
  inventory"""

ALFWORLD_SYSTEM = """\
You are an agent in a household. You interact with the rooms only through text commands to complete a task.
{answer}
Commands (use object and receptacle names exactly as the observations write them, with their numbers):
{commands}
You can hold one object at a time. Look inside closed receptacles by opening them first."""

ALFWORLD_EXAMPLE = """\
Example:
User: You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 1, \
a coffeemachine 1, a sinkbasin 1. Your task is to: put a clean mug in coffeemachine.
Assistant: Think: A mug is likely on the countertop or in the cabinet. I check the countertop first.
Action: go to countertop 1
User: You arrive at countertop 1. On the countertop 1, you see a mug 1, and a spoon 2.
Assistant: Think: I found a mug. I take it.
Action: take mug 1 from countertop 1
User: You pick up the mug 1 from the countertop 1.
Assistant: Think: The mug must be clean, so I go to the sinkbasin.
Action: go to sinkbasin 1
User: You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing.
Assistant: Think: I clean the mug here.
Action: clean mug 1 with sinkbasin 1
User: You clean the mug 1 using the sinkbasin 1.
Assistant: Think: Now I bring the clean mug to the coffeemachine.
Action: go to coffeemachine 1
User: You arrive at coffeemachine 1. On the coffeemachine 1, you see nothing.
Assistant: Think: I put the mug in the coffeemachine.
Action: move mug 1 to coffeemachine 1"""

TEXTWORLD_SYSTEM = """\
You are playing a text adventure game. You act only through text commands to reach the goal.
{answer}
Typical commands: go north/south/east/west, look, inventory, examine X, take X, take X from Y, drop X,
put X on Y, insert X into Y, open X, close X, unlock X with Y, lock X with Y, eat X."""

TEXTWORLD_EXAMPLE = """\
Example:
User: You are in a kitchen. There is a closed fridge here. An exit leads east. Goal: put the apple on the table.
Assistant: Think: The apple may be in the fridge.
Action: open fridge
User: You open the fridge, revealing an apple."""

MATH_SYSTEM = """\
Solve the math problem step by step. Write exactly one reasoning step per message, on one line, with the
arithmetic written out. When you know the answer, write the final step as: #### <answer>"""

MATH_EXAMPLE = """\
Example:
User: Question: Tom has 3 boxes of 4 apples and eats 2 apples. How many apples are left?
Assistant: Tom has 3 * 4 = 12 apples.
User: Next step.
Assistant: After eating 2, he has 12 - 2 = 10 apples.
User: Next step.
Assistant: #### 10"""

MATH_NEXT = "Next step."
TURN_STOPS = ("\nUser:", "\nObservation:")  # a reply that goes on to write the env's turn stops there

ANSWER_WITH_THOUGHTS = """\
Each turn, answer with exactly two lines:
Think: <one short sentence of reasoning>
Action: <one command>"""
ANSWER_THOUGHT_FREE = """\
Each turn, answer with exactly one line:
Action: <one command>"""

_SYSTEM = {"alfworld": ALFWORLD_SYSTEM, "textworld": TEXTWORLD_SYSTEM, "math": MATH_SYSTEM}
_THINK_LINE = re.compile(r"(?<=Assistant: )Think: [^\n]*\n")
_EXAMPLE = {"alfworld": ALFWORLD_EXAMPLE, "textworld": TEXTWORLD_EXAMPLE, "math": MATH_EXAMPLE}


def check_env_kind(env_kind: str) -> str:
    if env_kind not in ENV_KINDS:
        raise ValueError(f"unknown env kind {env_kind!r}; expected one of {', '.join(ENV_KINDS)}")
    return env_kind


def system_prompt(env_kind: str, example: bool = True, thoughts: bool = True) -> str:
    """The system instruction for ``env_kind`` (action syntax), optionally with an in-context example.

    ``thoughts=False`` asks for thought-free turns (``Action: <command>`` alone) and drops the ``Think:`` lines
    from the example; math turns are reasoning steps either way, so it does not change the math prompt.
    """
    check_env_kind(env_kind)
    answer = ANSWER_WITH_THOUGHTS if thoughts else ANSWER_THOUGHT_FREE
    text = _SYSTEM[env_kind].format(answer=answer, commands=ALFWORLD_COMMANDS)
    if not example:
        return text
    shown = _EXAMPLE[env_kind] if thoughts else _THINK_LINE.sub("", _EXAMPLE[env_kind])
    return f"{text}\n\n{shown}"


def first_user_turn(env_kind: str, observation: str, info: dict[str, Any]) -> str:
    """The user message that opens an episode: the env's first observation (plus the task if it is missing)."""
    text = observation.strip()
    task = str(info.get("task") or "").strip()
    if env_kind == "math":
        return text if text.lower().startswith("question") else f"Question: {text}"
    if task and task not in text:
        text = f"{text}\nYour task is to: {task}"
    return text


def next_user_turn(env_kind: str, observation: str) -> str:
    """The user message after an action: the env's answer (math echoes the problem, so it just asks on)."""
    if env_kind == "math":
        return MATH_NEXT
    return observation.strip() or "Nothing happens."


def initial_messages(
    env_kind: str, observation: str, info: dict[str, Any], example: bool = True, thoughts: bool = True
) -> list[dict[str, str]]:
    """System instruction (see :func:`system_prompt`) and the opening user turn of an episode."""
    return [
        {"role": "system", "content": system_prompt(env_kind, example, thoughts)},
        {"role": "user", "content": first_user_turn(env_kind, observation, info)},
    ]


def window(messages: list[dict[str, str]], last_turns: int | None) -> list[dict[str, str]]:
    """The prompt to send: system + opening user turn + the last ``last_turns`` (assistant, user) pairs.

    ``None`` keeps the full history. The opening turn always stays: it holds the task.
    """
    if last_turns is None:
        return list(messages)
    head = 2 if messages and messages[0]["role"] == "system" else 1
    rest = messages[head:]
    keep = 2 * last_turns
    return list(messages[:head]) + (list(rest[-keep:]) if keep > 0 else [])


def format_react(thought: str, action: str, env_kind: str, thoughts: bool = True) -> str:
    """An assistant turn in the shared format (experts and random policies write these).

    ``thoughts=False`` writes the thought-free turn ``Action: <command>`` (``thought`` is ignored).
    """
    if env_kind == "math":
        return action.strip()
    if not thoughts:
        return f"Action: {action.strip()}"
    return f"Think: {thought.strip()}\nAction: {action.strip()}"


def templated_turn(thought: str, action: str, env_kind: str, thoughts: bool = True) -> Decision:
    """A templated policy's decision (expert, random): ``action`` with ``thought`` written in the shared format;
    the thought is recorded only where the turn carries one (``thoughts`` on, not math)."""
    thought = thought if thoughts and env_kind != "math" else ""
    return Decision(action=action, raw=format_react(thought, action, env_kind, thoughts), thought=thought)


_ACTION = re.compile(r"^[\s>*#`\-]*action[*_]*\s*[:：][*_]*\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_THINK = re.compile(r"^[\s>*#`\-]*(?:think|thought)[*_]*\s*[:：][*_]*\s*", re.IGNORECASE)


def _clean_action(text: str) -> str:
    text = text.strip().strip("*_`\"'").strip()
    if text.endswith("."):  # "go to sofa 1." -> "go to sofa 1" (commands never end with a period)
        text = text[:-1].rstrip()
    return text


def parse_react(text: str, env_kind: str) -> tuple[str, str, bool]:
    """Splits a model reply into ``(thought, action, valid)``.

    ALFWorld/TextWorld: the first line starting with ``Action:`` (any case, markdown bullets allowed) gives the
    action; the text before it (minus a ``Think:`` label) is the thought. No such line, or an empty one: the
    whole raw text is the action and ``valid`` is False. Math: the first non-empty line is the step.
    """
    if env_kind == "math":
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return "", (lines[0] if lines else text), bool(lines)
    match = _ACTION.search(text)
    if match is None:
        return "", text, False
    action = _clean_action(match.group(1))
    if not action:  # "Action:" alone on its line: accept the next non-empty line
        following = [line for line in text[match.end() :].splitlines() if line.strip()]
        action = _clean_action(following[0]) if following else ""
    if not action:
        return "", text, False
    thought = _THINK.sub("", text[: match.start()].strip(), count=1).strip()
    return thought, action, True


def record_turn(context: Any, decision: Any, observation: str, info: dict[str, Any]) -> None:
    """Appends a decision (assistant turn, raw) and the env's answer (next user turn) to a policy context."""
    context.messages.append({"role": "assistant", "content": decision.raw})
    context.messages.append({"role": "user", "content": next_user_turn(context.env_kind, observation)})
    context.observation = observation
    context.info = info
