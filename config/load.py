"""Load the YAML configuration file into ``CtiConfig`` with errors that name file, line and key path.

``${NAME}`` and ``${NAME:-default}`` in string values are replaced from the environment, so secrets
can stay out of the file. Error messages never echo the value of a secret-looking key.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from config.schema import CtiConfig
from cti.config_types import Loc

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_WORDS = ("secret", "password", "token", "key")


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration file is invalid; ``issues`` holds every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        # in file order: by file, then line (issues without a line first), then key path
        self.issues = sorted(issues, key=lambda i: (i.file, i.line or 0, i.path))
        super().__init__("\n".join(str(i) for i in issues))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _is_secret_key(loc: Loc) -> bool:
    return any(isinstance(p, str) and any(w in p.lower() for w in _SECRET_WORDS) for p in loc)


# --- YAML with line numbers ---------------------------------------------------------------------

def _line_map(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = (*loc, key)
            out[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, out)
            # remember the value's own line too, for errors about the value
            out.setdefault((*child, "__value__"), value_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*loc, i), out)


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """Line of ``loc``, or of its nearest ancestor that is in the file."""
    probe = tuple(loc)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return lines.get((), None)


def _expand_env(value: Any, loc: Loc, issues: list[tuple[Loc, str]]) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            issues.append((loc, f"environment variable {name} is not set"))
            return ""
        return _ENV_RE.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, (*loc, k), issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*loc, i), issues) for i, v in enumerate(value)]
    return value


# --- friendly pydantic errors ------------------------------------------------------------------

def _unwrap(tp: Any) -> list[Any]:
    """Possible concrete types behind Optional/Union/Annotated."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            if arg is not type(None):
                out.extend(_unwrap(arg))
        return out
    return [tp]


def _step(candidates: list[Any], part: str | int) -> tuple[list[Any], FieldInfo | None]:
    """One step down the schema from ``candidates`` along ``part``: the types that can sit there and,
    for a named key, its FieldInfo (through models, lists, mappings and unions)."""
    found: FieldInfo | None = None
    next_candidates: list[Any] = []
    for cand in candidates:
        for tp in _unwrap(cand):
            origin = typing.get_origin(tp)
            if isinstance(part, str) and isinstance(tp, type) and issubclass(tp, BaseModel):
                f = tp.model_fields.get(part)
                if f is not None:
                    found = f
                    next_candidates.append(f.annotation)
            elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
                next_candidates.extend(typing.get_args(tp)[:1])
            elif origin is dict:
                args = typing.get_args(tp)
                if len(args) == 2:
                    next_candidates.append(args[1])
    return next_candidates, found


def _field_at(model: type[BaseModel], loc: Loc) -> FieldInfo | None:
    """Walk the schema along ``loc`` to the FieldInfo of its last named key."""
    candidates: list[Any] = [model]
    field: FieldInfo | None = None
    for part in loc:
        candidates, found = _step(candidates, part)
        field = found or field
        if not candidates:
            return field if part == loc[-1] else None
    return field


def _expected_text(field: FieldInfo | None) -> str | None:
    if field is None:
        return None
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("expected"), str):
        return str(extra["expected"])
    for meta in field.metadata:
        extra = getattr(meta, "json_schema_extra", None)
        if isinstance(extra, dict) and isinstance(extra.get("expected"), str):
            return str(extra["expected"])
    return None


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Any, loc: Loc, siblings: list[str]) -> str:
    etype = err["type"]
    if etype == "missing":
        return "required key is missing"
    if etype == "extra_forbidden":
        key = loc[-1] if loc else ""
        close = difflib.get_close_matches(str(key), siblings, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key{hint}"
    field = _field_at(CtiConfig, loc)
    want = _expected_text(field)
    secret = _is_secret_key(loc)
    got = "" if secret or "input" not in err else f", got {_show(err['input'])}"
    if want:
        return f"expected {want}{got}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"{msg[0].lower() + msg[1:] if msg else msg}{got}"


def _models_at(model: type[BaseModel], loc: Loc) -> list[type[BaseModel]]:
    """The schema models that can sit at ``loc`` (through mappings, lists and unions)."""
    candidates: list[Any] = [model]
    for part in loc:
        candidates, _ = _step(candidates, part)
    return [tp for cand in candidates for tp in _unwrap(cand) if isinstance(tp, type) and issubclass(tp, BaseModel)]


def _fits(model: type[BaseModel], value: Any) -> bool:
    """Whether ``value`` (a mapping from the file) can be this member of a union: its tag fields agree."""
    if not isinstance(value, dict):
        return True
    for name, f in model.model_fields.items():
        if typing.get_origin(f.annotation) is typing.Literal and name in value \
                and value[name] not in typing.get_args(f.annotation):
            return False
    return True


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _siblings(loc: Loc, data: Any = None) -> list[str]:
    """The keys allowed beside the last key of ``loc`` (for "did you mean" on an unknown key); of a union
    (IVR node kinds), the members whose tag (``kind``) matches the file's mapping at the parent."""
    keys: list[str] = []
    models = _models_at(CtiConfig, loc[:-1])
    parent = _value_at(data, loc[:-1])
    models = [tp for tp in models if _fits(tp, parent)] or models
    for tp in models:
        keys.extend(k for k in tp.model_fields if k not in keys)
        keys.extend(f.alias for f in tp.model_fields.values() if f.alias and f.alias not in keys)
    return keys


# --- entry points ------------------------------------------------------------------------------

def load_config_text(text: str, filename: str = "<config>") -> CtiConfig:
    """Parse and validate YAML text; raise ConfigError listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(filename, line, "", f"not valid YAML: {problem}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(filename, 1, "", "expected a mapping of sections at the top level")])
    lines: dict[Loc, int] = {}
    if root is not None:
        _line_map(root, (), lines)
    env_issues: list[tuple[Loc, str]] = []
    data = _expand_env(data, (), env_issues)
    issues = [ConfigIssue(filename, line_of(lines, loc), format_loc(loc), msg) for loc, msg in env_issues]
    try:
        cfg = CtiConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            # a bad value is reported at the value's line; a bad or missing key at the key's line
            value_line = None if err["type"] in ("extra_forbidden", "missing") else lines.get((*loc, "__value__"))
            line = value_line or line_of(lines, loc)
            issues.append(ConfigIssue(filename, line, format_loc(loc), _message(err, loc, _siblings(loc, data))))
        raise ConfigError(issues) from None
    for loc, msg in cfg.semantic_errors():
        issues.append(ConfigIssue(filename, line_of(lines, loc), format_loc(loc), msg))
    if issues:
        raise ConfigError(issues)
    return cfg


def load_config(path: str | os.PathLike[str]) -> CtiConfig:
    """Read and validate a configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(p), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"cannot read: {exc.__class__.__name__}")]) from None
    return load_config_text(text, str(path))
