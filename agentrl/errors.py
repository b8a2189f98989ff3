"""One error base class for everything a user can get wrong; the CLI catches it once.

Every error the library raises about its input (a config value, a file, a model, a dataset, an env that cannot
be built) is an :class:`AgentRLError` whose message names that input (``file:line``, ``key``, the env and its
options). ``agentrl <command>`` prints it as one line and exits with code 2; anything else is a bug and keeps
its traceback. The subclasses keep ``ValueError`` as a second base, so code that caught ``ValueError`` still
works (as Gymnasium's ``gymnasium/error.py`` keeps built-in bases).
"""

from __future__ import annotations


class AgentRLError(Exception):
    """Bad input to agentrl; the message says which input and what is wrong with it."""


class EnvBuildError(AgentRLError, ValueError):
    """An environment could not be made (in this process or in a worker): unknown dataset, corrupt file, ..."""


def one_line(message: object) -> str:
    """``message`` as a single line: newlines (a worker's multi-line text, a YAML mark) become ``"; "``."""
    parts = [part.strip() for part in str(message).splitlines()]
    return "; ".join(part for part in parts if part)
