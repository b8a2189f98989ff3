"""Text generation backends behind one small Protocol (see ``base.py``)."""

from agentrl.backends.base import Completion, Generator, Request, Sampling

__all__ = ["Completion", "Generator", "Request", "Sampling"]
