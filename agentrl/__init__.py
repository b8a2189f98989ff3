"""agentrl: offline RL (OREO) for LLM agents."""

import importlib.abc
import importlib.util
import sys
from pathlib import Path as _Path

__version__ = "0.1.0"

_ROOT = _Path(__file__).resolve().parent.parent
_MAPPED = {"agentrl.envs": _ROOT / "envs", "agentrl.policies": _ROOT / "policies"}


class _SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Maps ``agentrl.envs``/``agentrl.policies`` to the top-level envs/ and policies/ folders.

    Installed (wheel or editable), setuptools' package-dir mapping does this and this finder, appended last to
    ``sys.meta_path``, is never reached. Run from a source checkout without installing (``PYTHONPATH=.``, as on a
    GPU box), it makes the same mapping.
    """

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 (importlib's signature)
        folder = _MAPPED.get(fullname)
        if folder is None or not (folder / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


if all((folder / "__init__.py").is_file() for folder in _MAPPED.values()):
    sys.meta_path.append(_SourceTreeFinder())
