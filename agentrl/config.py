"""Command configs: one dataclass per command, loaded from YAML and overridden by CLI flags.

Each field carries its help text in ``field(metadata={"help": ...})``; checks live in ``__post_init__``.
``parse_config(Cls, argv)`` builds an ``argparse`` parser from the dataclass, reads ``--config file.yaml``
first and lets flags override it. Unknown keys, in YAML or flags, raise :class:`ConfigError` naming the
nearest valid key; the CLI turns that into exit code 2 with a one-line message.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agentrl.errors import AgentRLError

C = TypeVar("C")


class ConfigError(AgentRLError, ValueError):
    """A config value or key is wrong; the message says which and where."""


def option(
    default: Any = dataclasses.MISSING, help: str = "", positional: bool = False, nargs: str | None = None, **kwargs: Any
) -> Any:  # noqa: A002
    """A dataclass field with a help string (mutable defaults go through ``default_factory``)."""
    metadata = {"help": help, "positional": positional, "nargs": nargs}
    if isinstance(default, list | dict) or (dataclasses.is_dataclass(default) and not isinstance(default, type)):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean `{close[0]}`?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"{where}: unknown key `{key}`{hint}")


def _base_type(tp: Any) -> Any:
    """``int | None`` -> ``int``; ``list[str]`` stays as is."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Converts a YAML or CLI value to the field's type, with an error naming the key."""
    if value is None:
        return None
    base = _base_type(tp)
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if origin is list:
            (item_tp,) = typing.get_args(base) or (str,)
            items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
            return [_coerce(v.strip() if isinstance(v, str) else v, item_tp, key, where) for v in items]
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            if not isinstance(value, dict):
                raise ValueError(value)
            return from_dict(base, value, where=f"{where}: {key}")
        if origin is dict or base is dict:
            if not isinstance(value, dict):
                raise ValueError(value)
            args = typing.get_args(base)
            if len(args) == 2 and args[1] is not Any:
                return {k: _coerce(v, args[1], f"{key}.{k}", where) for k, v in value.items()}
            return value
        if base in (int, float, str):
            if base is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return base(value)
        return value
    except ConfigError:  # a nested section's own check: its message is the better one
        raise
    except (TypeError, ValueError):
        name = getattr(base, "__name__", str(base))
        raise ConfigError(f"{where}: `{key}` must be {name}, got {value!r}") from None


def _yaml_lines(path: Path) -> dict[str, int]:
    """Line number of each top-level key, so errors can say file:line."""
    lines: dict[str, int] = {}
    node = yaml.compose(path.read_text())
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            lines[str(key_node.value)] = key_node.start_mark.line + 1
    return lines


def load_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Reads a YAML mapping and the line of each key; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {'is a folder' if path.is_dir() else 'not found'}: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        lines = _yaml_lines(path)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (YAML is UTF-8 text)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data, lines


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def from_dict(cls: type[C], data: dict[str, Any], where: str = "config", lines: dict[str, int] | None = None) -> C:
    """Builds ``cls`` from a mapping, rejecting unknown keys (with the nearest valid one)."""
    fields = _fields(cls)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        loc = f"{where}:{lines[raw_key]}" if lines and raw_key in lines else where
        if key not in fields:
            raise _unknown(str(raw_key), list(fields), loc)
        values[key] = _coerce(value, hints[key], key, loc)
    try:
        return cls(**values)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {err}") from None


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so unknown flags get a did-you-mean and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(message)


def _owner(cls: type, name: str) -> type:
    """The class that first declares field ``name``: an option group of ``agentrl.options``, or ``cls`` itself."""
    for base in reversed(cls.__mro__):
        if name in base.__dict__.get("__annotations__", {}):
            return base
    return cls


def _group_title(cls: type, name: str) -> str:
    """``--help`` heading of field ``name``: its option group's ``title``, else "command"."""
    return str(_owner(cls, name).__dict__.get("title", "command"))


def _group_rank(cls: type, name: str) -> int:
    """The command's own fields first, then its groups in the order they are listed in its bases."""
    owner = _owner(cls, name)
    return -1 if "title" not in owner.__dict__ else cls.__mro__.index(owner)


def build_parser(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one ``--flag`` per dataclass field (all optional: YAML may supply them)."""
    parser = _Parser(prog=prog, description=description or (cls.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with any of the options below")
    hints = typing.get_type_hints(cls)
    sections: dict[str, argparse._ArgumentGroup] = {}
    for name, f in sorted(_fields(cls).items(), key=lambda item: _group_rank(cls, item[0])):
        title = _group_title(cls, name)
        if title not in sections:
            sections[title] = parser.add_argument_group(f"{title} options")
        section = sections[title]
        if f.metadata.get("positional"):
            section.add_argument(name, nargs="?", default=argparse.SUPPRESS, help=f.metadata.get("help", ""))
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        base = _base_type(hints[name])
        help_text = f.metadata.get("help", "")
        if default not in (None, [], {}, "") and base is not bool:
            help_text += f" (default: {default})"
        if base is bool:
            section.add_argument(
                _flag(name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            metavar = name.upper() if typing.get_origin(base) is not list else f"{name.upper()}[,...]"
            section.add_argument(
                _flag(name),
                nargs=f.metadata.get("nargs"),
                default=argparse.SUPPRESS,
                metavar=metavar,
                help=help_text,
            )
    return parser


def parse_config(cls: type[C], argv: list[str], prog: str, description: str | None = None) -> C:
    """``--config file.yaml`` first, then flags on top; unknown keys raise :class:`ConfigError`."""
    parser = build_parser(cls, prog, description)
    known, extra = parser.parse_known_args(argv)
    nested = _dotted_flags(extra, [f.replace("_", "-") for f in _fields(cls)])
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    where = "command line"
    config = known.config or getattr(cls, "default_config", None)  # a command may ship a default YAML
    if config:
        data, lines = load_yaml(config)
        where = str(config)
    for key, value in nested.items():  # `--sft.epochs 3` overrides `sft: {epochs: ...}` of the YAML
        data[key] = _deep_merge(data.get(key) if isinstance(data.get(key), dict) else {}, value)
    flags = {k: v for k, v in vars(known).items() if k != "config"}
    fields = _fields(cls)
    for key in data:
        if str(key).replace("-", "_") not in fields:
            raise _unknown(str(key), list(fields), f"{where}:{lines.get(key, '?')}")
    merged = {str(k).replace("-", "_"): v for k, v in data.items()}
    merged_lines = {str(k).replace("-", "_"): v for k, v in lines.items()}
    merged.update(flags)
    for key in flags:
        merged_lines.pop(key, None)
    return from_dict(cls, merged, where=where, lines=merged_lines)


def _dotted_flags(extra: list[str], valid: list[str]) -> dict[str, Any]:
    """``["--sft.epochs", "3", "--learners.OREO.lr", "1e-4"]`` -> ``{"sft": {"epochs": 3}, "learners": ...}``.

    The value is the next argument, read as YAML (``3`` -> 3, ``[1, 3]`` -> a list); section keys may hold any
    character but dots (method names such as ``OREO beam B={b}``), so there is no ``--key=value`` form.

    Raises:
        ConfigError: a flag that is neither a field nor a dotted path into one (with the nearest valid key).
    """
    nested: dict[str, Any] = {}
    for i in range(0, len(extra), 2):
        flag = extra[i]
        key = flag[2:] if flag.startswith("--") else flag
        if not flag.startswith("--") or "." not in key:
            raise _unknown(key.split("=")[0], valid, "command line")
        if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
            raise ConfigError(f"command line: `{flag}` needs a value (`{flag} VALUE`)")
        first, *rest = key.split(".")  # a field name, then section keys
        *path, last = [first.replace("-", "_"), *rest]
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        try:
            node[last] = yaml.safe_load(extra[i + 1])
        except yaml.YAMLError:
            raise ConfigError(f"command line: `{flag}`: cannot read {extra[i + 1]!r}") from None
    return nested


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain data (for results.json and run folders)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


_ON = {"on", "true", "yes", "1"}
_OFF = {"off", "false", "no", "0"}


def on_off(value: Any, key: str) -> str:
    """A switch option (``--thoughts on|off``) as ``"on"`` or ``"off"``; YAML's ``off`` arrives as ``False``.

    Raises:
        ConfigError: the value is neither (naming ``key``).
    """
    text = str(value).strip().lower()
    if text in _ON:
        return "on"
    if text in _OFF:
        return "off"
    raise ConfigError(f"`{key}` must be on or off, got {value!r}")


def require(condition: bool, message: str) -> None:
    """``__post_init__`` helper: raise :class:`ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)
