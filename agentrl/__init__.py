"""agentrl: offline RL (OREO) for LLM agents."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Installed, `agentrl.envs` and `agentrl.policies` are the top-level envs/ and policies/ folders mapped in by
# setuptools' package-dir. Run from a source checkout without installing (PYTHONPATH=., as on a GPU box), the
# same mapping is made here; in an installed wheel the sibling folders do not exist and nothing changes.
_root = _Path(__file__).resolve().parent.parent
if (_root / "envs" / "__init__.py").is_file() and (_root / "policies" / "__init__.py").is_file():
    __path__.append(str(_root))  # noqa: F821 (the package's own __path__)
