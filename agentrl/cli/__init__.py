"""The ``agentrl`` command: ``agentrl <command> [--config F.yaml] [--flags]``.

Each command is one module in this package exposing ``Config`` (a dataclass), ``run(cfg) -> int`` and a
one-line ``__doc__``; it parses and calls the library. Every :class:`~agentrl.errors.AgentRLError` (bad input,
found while parsing or while running) is caught here, once, and printed as one line with exit code 2. Commands import their heavy dependencies inside ``run``, so ``agentrl --help`` is fast.
A command is listed here only once it works end to end.
"""

from __future__ import annotations

import importlib
import sys

from rich.console import Console

from agentrl.config import parse_config
from agentrl.errors import AgentRLError, one_line

COMMANDS: dict[str, str] = {
    "model": "agentrl.cli.model",
    "gen": "agentrl.cli.gen",
    "learn": "agentrl.cli.learn",
    "augment": "agentrl.cli.augment",
    "rollout": "agentrl.cli.rollout",
    "serve": "agentrl.cli.serve",
    "replay": "agentrl.cli.replay",
    "plot": "agentrl.cli.plot",
    "eval": "agentrl.cli.eval",
    "critic-report": "agentrl.cli.critic_report",
    "iterate": "agentrl.cli.iterate",
    "recipe": "agentrl.cli.recipe",
    "demo": "agentrl.cli.demo",
}

_err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)  # messages hold "[extra]" install hints


def _usage() -> str:
    lines = ["usage: agentrl <command> [--config FILE.yaml] [options]", "", "commands:"]
    width = max(map(len, COMMANDS))
    for name, module in COMMANDS.items():
        doc = (importlib.import_module(module).__doc__ or "").strip().split("\n")[0]
        lines.append(f"  {name:<{width}} {doc}")
    lines += ["", "Run `agentrl <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from agentrl import __version__

        print(f"agentrl {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        _err.print(f"agentrl: unknown command `{name}`{hint} (see `agentrl --help`)")
        return 2
    module = importlib.import_module(COMMANDS[name])
    try:
        cfg = parse_config(module.Config, rest, prog=f"agentrl {name}", description=module.__doc__)
        return int(module.run(cfg) or 0)
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except AgentRLError as err:  # bad input, wherever it was found: one line, exit code 2
        _err.print(f"agentrl {name}: error: {one_line(err)}")
        return 2
    except KeyboardInterrupt:
        _err.print(f"agentrl {name}: interrupted")
        return 130
