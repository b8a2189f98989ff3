"""A ``rich`` console view of an episode: replay from JSONL, or watch one env live during a rollout.

One frame per step: the thought (thought-free turns have none), the action, the expert's label when DAgger
recorded one, the environment's answer, the reward and — when a value-guided controller acted — the critic's
value and the candidates it weighed (the chosen one highlighted). The header
shows the task and the room; the footer a value sparkline and a success/failure banner. Every text is a
``rich.text.Text`` inside a panel, so long observations wrap at any terminal width.

:class:`LiveView` is the ``on_step`` hook of the rollout engine: it renders the same frames for one selected
env while episodes run, with the progress bar below, and prints plain lines when stdout is not a terminal.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentrl.errors import AgentRLError
from agentrl.types import Episode, Step

SPARK_CHARS = "▁▂▃▄▅▆▇█"
_TASK_MARK = "Your task is to:"


class ReplayError(AgentRLError, ValueError):
    """The requested episode does not exist; the message lists what does."""


SHOWN_CHARS = 2_000  # a longer action, thought or answer is clipped on screen (the file keeps it whole)


def shown(text: object, limit: int = SHOWN_CHARS) -> str:
    """Model or env text made safe to print: control characters drawn as symbols, long text clipped.

    Model output is untrusted: an ESC or BEL in an action would otherwise drive the terminal. C0 controls become
    their Unicode pictures (NUL -> U+2400), other control and format characters ``?``; newlines and tabs stay.
    """
    out = []
    for c in str(text)[: limit + 1]:
        if c in "\n\t":
            out.append(c)
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(chr(0x2400 + ord(c)) if c != "\x7f" else "\u2421")
        elif unicodedata.category(c).startswith("C"):
            out.append("?")
        else:
            out.append(c)
    text = str(text)
    return "".join(out[:limit]) + (f" … (+{len(text) - limit:,} chars)" if len(text) > limit else "")


def sparkline(values: Sequence[float | None]) -> str:
    """Unicode block sparkline of a value trace; missing values are spaces.

    Values are scaled between the trace's min and max (a flat trace is drawn at mid height).
    """
    present = [v for v in values if v is not None]
    if not present:
        return ""
    lo, hi = min(present), max(present)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif hi - lo < 1e-12:
            out.append(SPARK_CHARS[len(SPARK_CHARS) // 2])
        else:
            out.append(SPARK_CHARS[round((v - lo) / (hi - lo) * (len(SPARK_CHARS) - 1))])
    return "".join(out)


def split_task(observation: str, task: str | None = None) -> tuple[str, str]:
    """``(task, room)`` from a first observation such as ALFWorld's "You are in ... Your task is to: ...".

    An explicit ``task`` (e.g. ``info["task"]``) wins; otherwise the text after "Your task is to:" is the task
    and what comes before it is the room description.
    """
    text = observation.strip()
    if _TASK_MARK in text:
        room, _, rest = text.partition(_TASK_MARK)
        room = room.replace("-= Welcome to TextWorld, ALFRED! =-", "").strip()
        return (task or rest.strip()), room
    return (task, text) if task else (text, "")


def _new_part(before: str, after: str) -> str:
    """The env's answer without what the agent already saw (math envs echo question + steps so far)."""
    before, after = before.strip(), after.strip()
    if before and after.startswith(before) and len(after) > len(before):
        return "… " + after[len(before) :].strip()
    return after


@dataclass
class EpisodeView:
    """What the view needs to draw an episode; built from an :class:`Episode` or live, step by step.

    ``answers[i]`` is the environment's reply to ``steps[i].action`` (``None`` if not known).
    """

    title: str
    task: str
    room: str
    steps: list[Step] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    success: bool | None = None
    subtitle: str = ""
    search: str = ""
    solutions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_episode(cls, episode: Episode) -> EpisodeView:
        first = episode.steps[0].observation if episode.steps else ""
        if not first:
            first = next((m["content"] for m in episode.messages if m.get("role") == "user"), "")
        task, room = split_task(first, episode.meta.get("task"))
        answers: list[str | None] = [s.observation for s in episode.steps[1:]]
        if episode.steps:
            answers.append(_final_answer(episode))
        answers = [None if a is None else _new_part(s.observation, a) for s, a in zip(episode.steps, answers, strict=True)]
        ended = "error: " + episode.error if episode.error else ""
        return cls(
            title=f"{episode.task_id}  [{episode.task_type}]",
            task=task,
            room=room,
            steps=list(episode.steps),
            answers=answers,
            success=episode.success,
            subtitle=" · ".join(x for x in (f"policy {episode.policy}", episode.episode_id, ended) if x),
            search=_search_facts(episode.meta),
            solutions=[s for s in episode.meta.get("solutions") or [] if isinstance(s, dict)],
        )


def _search_facts(meta: dict[str, Any]) -> str:
    """One line about the search that chose the episode (beam search, best-of-N), else empty."""
    if meta.get("beam") is not None:
        line = f"beam search B={meta['beam']}: {meta.get('search_steps', '?')} search steps"
        if meta.get("samples") is not None:
            line += f", {meta.get('expansions', '?')} distinct candidates of {meta['samples']} sampled"
        return line + f", {meta.get('finished_beams', '?')} beams finished"
    if meta.get("best_of_n") is not None:
        return (f"best of {meta['best_of_n']} solutions by the critic's value at the final afterstate: "
                f"sample {meta.get('chosen', '?')} chosen")
    return ""


def _final_answer(episode: Episode) -> str | None:
    """The env's answer to the last action: the last user message, if the chat recorded it."""
    users = [m.get("content", "") for m in episode.messages if m.get("role") == "user"]
    assistants = sum(1 for m in episode.messages if m.get("role") == "assistant")
    if users and assistants and len(users) > assistants and episode.messages[-1].get("role") == "user":
        return users[-1]
    return None


def _fmt_value(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" if v == 0 or abs(v) >= 1e-3 else f"{v:+.2e}"  # an untrained critic's values are tiny


def header(view: EpisodeView) -> Panel:
    """Task and room description."""
    body = Table.grid(padding=(0, 1))
    body.add_column(style="bold cyan", no_wrap=True)
    body.add_column(overflow="fold")
    body.add_row("Task", Text(shown(view.task or "(not recorded)"), style="bold"))
    if view.room:
        body.add_row("Room", Text(shown(view.room)))
    if view.search:
        body.add_row("Search", Text(shown(view.search), style="dim"))
    return Panel(body, title=Text(shown(view.title), style="bold"), subtitle=shown(view.subtitle) or None,
                 title_align="left")


def step_frame(view: EpisodeView, index: int) -> Panel:
    """One step: thought, action, env answer, reward, value and candidates (chosen one highlighted)."""
    step = view.steps[index]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    if step.thought:
        grid.add_row(Text("Think", style="magenta"), Text(shown(step.thought), style="italic"))
    action_style = "bold green" if step.valid else "bold red"
    action = shown(step.action) + ("" if step.valid else "  (unparsed)")
    grid.add_row(Text("Action", style="green"), Text(action, style=action_style))
    if step.label is not None:  # DAgger: the expert's action here; a different one is a correction
        agrees = " ".join(step.label.lower().split()) == " ".join(step.action.lower().split())
        grid.add_row(Text("Expert", style="cyan"), Text(shown(step.label) + ("" if agrees else "  (correction)"),
                                                        style="cyan" if agrees else "bold yellow"))
    answer = view.answers[index] if index < len(view.answers) else None
    if answer is not None:
        grid.add_row(Text("Env", style="blue"), Text(shown(answer.strip())))
    facts = f"reward {step.reward:g}"
    if step.value is not None:
        facts += f"   value {_fmt_value(step.value)}"
    grid.add_row(Text("", style="dim"), Text(facts, style="dim"))
    parts: list[RenderableType] = [grid]
    if step.candidates:
        parts.append(Text(f"{len(step.candidates)} candidates", style="dim"))
        parts.append(_candidates(step))
    return Panel(Group(*parts), title=f"step {index + 1}", title_align="left", border_style="white")


def _candidates(step: Step) -> Table:
    """The candidates a controller weighed at ``step``, best first, the one acted on marked ``▶``.

    Admissible top-K adds ``log pi`` and ``score`` (ranked by it); beam search adds ``×n`` (how many of the
    beam's samples were this step) and ``beam`` (``kept``: it survived the step's top-B cut).
    """
    cands = step.candidates or []
    table = Table(show_edge=False, box=None, padding=(0, 1), header_style="dim")
    table.add_column("", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    scored = all(c.score is not None for c in cands)  # admissible top-K: V + c * log pi
    counted = any(c.samples is not None for c in cands)
    beam = any(c.kept is not None for c in cands)
    if scored:
        table.add_column("log pi", justify="right", no_wrap=True)
        table.add_column("score", justify="right", no_wrap=True)
    if counted:
        table.add_column("×n", justify="right", no_wrap=True)
    if beam:
        table.add_column("beam", no_wrap=True)
    table.add_column("candidate", overflow="fold")
    rank = (lambda c: c.score) if scored else (lambda c: c.value)
    best = max(rank(c) for c in cands)
    chosen_seen = False
    for c in sorted(cands, key=lambda c: -rank(c)):
        chosen = not chosen_seen and c.action == step.action
        chosen_seen = chosen_seen or chosen
        style = "bold reverse green" if chosen else ("yellow" if rank(c) == best else "")
        extra = [f"{c.logprob:.2f}", _fmt_value(c.score)] if scored else []
        extra += [f"×{c.samples}" if c.samples is not None else ""] if counted else []
        extra += ["kept" if c.kept else ""] if beam else []
        table.add_row("▶" if chosen else " ", _fmt_value(c.value), *extra, Text(shown(c.action), style=style))
    return table


def solutions_table(view: EpisodeView) -> Table:
    """Best-of-N: every sampled solution with its final value and outcome, best first, the chosen one ``▶``."""
    table = Table(title=f"{len(view.solutions)} solutions", show_edge=False, box=None, padding=(0, 1),
                  header_style="dim", title_style="dim", title_justify="left")
    for name, justify in (("", "left"), ("sample", "right"), ("value", "right"), ("steps", "right"),
                          ("outcome", "left"), ("final step", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "final step", overflow="fold")  # type: ignore[arg-type]
    ranked = sorted(view.solutions, key=lambda s: (s.get("value") is None, -(s.get("value") or 0.0)))
    for sol in ranked:
        chosen = bool(sol.get("chosen"))
        outcome = "error" if sol.get("error") else ("success" if sol.get("success") else "failure")
        table.add_row("▶" if chosen else " ", str(sol.get("sample", "")), _fmt_value(sol.get("value")),
                      str(sol.get("steps", "")), outcome,
                      Text(shown(sol.get("final", "")), style="bold reverse green" if chosen else ""))
    return table


def footer(view: EpisodeView) -> RenderableType:
    """Best-of-N's solutions (when recorded), value sparkline (when values were) and the success banner."""
    parts: list[RenderableType] = [solutions_table(view)] if view.solutions else []
    values = [s.value for s in view.steps]
    if any(v is not None for v in values):
        present = [v for v in values if v is not None]
        line = Text("value  ", style="bold")
        line.append(sparkline(values), style="cyan")
        line.append(f"   first {_fmt_value(present[0])}  last {_fmt_value(present[-1])}", style="dim")
        parts.append(line)
    if view.success is not None:
        n = len(view.steps)
        if view.success:
            parts.append(Panel(Text(f"SUCCESS in {n} steps", justify="center", style="bold white"), style="on green"))
        else:
            parts.append(Panel(Text(f"FAILURE after {n} steps", justify="center", style="bold white"), style="on red"))
    return Group(*parts)


def episode_renderable(view: EpisodeView, last: int | None = None) -> Group:
    """The whole view (header, the last ``last`` steps or all, footer) as one renderable."""
    first = 0 if last is None else max(0, len(view.steps) - last)
    frames = [step_frame(view, i) for i in range(first, len(view.steps))]
    if first:
        frames.insert(0, Text(f"... {first} earlier steps", style="dim"))
    return Group(header(view), *frames, footer(view))


def play(episode: Episode, console: Console, delay: float = 0.0) -> None:
    """Prints the episode frame by frame, sleeping ``delay`` seconds between steps (0: all at once)."""
    view = EpisodeView.from_episode(episode)
    console.print(header(view))
    for i in range(len(view.steps)):
        if delay > 0 and i:
            time.sleep(delay)
        console.print(step_frame(view, i))
    console.print(footer(view))


def select_episode(episodes: Sequence[Episode], index: int | None = None, task_id: str | None = None) -> Episode:
    """The ``index``-th episode (0-based, negative from the end) or the first with ``task_id``."""
    if not episodes:
        raise ReplayError("the trajectory file holds no episodes")
    if task_id is not None:
        for ep in episodes:
            if ep.task_id == task_id or ep.episode_id == task_id:
                return ep
        known = sorted({ep.task_id for ep in episodes})
        shown = ", ".join(known[:5]) + (" ..." if len(known) > 5 else "")
        raise ReplayError(f"no episode with task id `{task_id}` (known: {shown})")
    index = 0 if index is None else index
    if not -len(episodes) <= index < len(episodes):
        raise ReplayError(f"episode {index} out of range: the file holds {len(episodes)} episode(s) (0..{len(episodes) - 1})")
    return episodes[index]


def export(console: Console, path: str, title: str = "agentrl replay") -> None:
    """Saves what a recording console printed as SVG or HTML (chosen by the file suffix)."""
    lower = path.lower()
    if lower.endswith(".svg"):
        console.save_svg(path, title=title, clear=False)
    elif lower.endswith((".html", ".htm")):
        console.save_html(path, clear=False)
    else:
        raise ReplayError(f"--export {path}: use a .svg or .html file name")


class LiveView:
    """The rollout engine's ``on_step`` hook: shows one env's episode as it runs.

    In a terminal each step's frame is printed through ``console`` (a running ``rich`` progress bar redirects
    prints above itself, so it stays below the view); when stdout is not a terminal each step is one plain
    line. Only env ``slot`` is shown; every other slot is ignored.

    Args:
        console: where to print (default: rich's global console, the one progress bars use).
        slot: which env to watch.
        max_steps: the rollout's step cap (an episode that reaches it ends without ``terminated``).
        plain: force plain lines (default: when the console is not a terminal).
    """

    def __init__(self, console: Console | None = None, slot: int = 0, max_steps: int | None = None,
                 plain: bool | None = None):
        from rich import get_console

        self.console = console or get_console()
        self.slot = slot
        self.max_steps = max_steps
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.view: EpisodeView | None = None
        self._context: Any = None
        self.episodes = 0

    def __call__(self, slot: int, context: Any, decision: Any, result: Any) -> None:
        if slot != self.slot:
            return
        if context is not self._context:  # a new episode started in this slot
            self._context = context
            self.episodes += 1
            info = getattr(context, "info", {}) or {}
            task, room = split_task(getattr(context, "observation", ""), info.get("task"))
            self.view = EpisodeView(title=f"env {slot} · episode {self.episodes} · {info.get('task_id', '')}",
                                    task=task, room=room, subtitle=str(info.get("task_type", "")))
            self._print_header()
        assert self.view is not None
        error = not isinstance(result, tuple)
        observation, reward, terminated, truncated, info = (str(result), 0.0, True, False, {}) if error else result
        step = Step(observation=getattr(context, "observation", ""), action=decision.action, thought=decision.thought,
                    reward=float(reward), value=decision.value, candidates=decision.candidates, valid=decision.valid,
                    label=getattr(decision, "label", None))
        self.view.steps.append(step)
        answer = str(observation) if error else _new_part(step.observation, str(observation))
        self.view.answers.append(("env error: " if error else "") + answer)
        index = len(self.view.steps) - 1
        if self.plain:
            value = "" if step.value is None else f" V={step.value:+.3f}"
            k = "" if not step.candidates else f" K={len(step.candidates)}"
            answer = " ".join(shown(self.view.answers[-1]).split())
            self.console.print(f"[env {slot}] step {index + 1}: {shown(step.action)} -> {answer} (r={reward:g}{value}{k})",
                               markup=False, highlight=False, soft_wrap=True)
        else:
            self.console.print(step_frame(self.view, index))
        ended = error or terminated or truncated or (self.max_steps is not None and len(self.view.steps) >= self.max_steps)
        if ended:
            self.view.success = bool(info.get("won", False)) and not error
            if self.plain:
                verdict = "SUCCESS" if self.view.success else "FAILURE"
                self.console.print(f"[env {slot}] {verdict} after {len(self.view.steps)} steps "
                                   f"{sparkline([s.value for s in self.view.steps])}".rstrip(),
                                   markup=False, highlight=False, soft_wrap=True)
            else:
                self.console.print(footer(self.view))

    def _print_header(self) -> None:
        assert self.view is not None
        if self.plain:
            self.console.print(f"[env {self.slot}] task: {shown(self.view.task)} | {shown(self.view.subtitle)}",
                               markup=False, highlight=False, soft_wrap=True)
        else:
            self.console.print(header(self.view))
