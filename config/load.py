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
from cti.tls import TlsFilesError, server_context

# YAML aliases share a node, so a short file can stand for billions of values ("billion laughs") or for a
# value that contains itself; walking that (line numbers, ${ENV}, validation) takes exponential time and
# memory, or never ends. Aliases may add at most this many values to those written in the file.
ALIAS_BUDGET = 100_000
MAX_DEPTH = 64  # nesting of mappings and lists; a valid configuration nests about ten deep
MAX_INT_DIGITS = 1000  # Python refuses to convert more than 4300 (a ValueError inside the YAML constructor)
_INT_TAG = "tag:yaml.org,2002:int"
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


def _children(node: yaml.Node) -> list[tuple[str | int | None, yaml.Node]]:
    """(key or index, child) of a collection node; a mapping's key nodes come with the key None."""
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[str | int | None, yaml.Node]] = []
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.tag)
            out += [(None, key_node), (str(key), value_node)]
        return out
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return []


def graph_problem(root: yaml.Node) -> tuple[int, Loc, str] | None:
    """(line, key path, what is wrong) if the composed YAML is a value that contains itself, nests deeper
    than ``MAX_DEPTH`` or, through aliases, stands for ``ALIAS_BUDGET`` values more than the file holds.

    Linear in the number of distinct nodes (sizes and heights are counted once per node, not per alias)
    and without recursion, so a bomb is refused in milliseconds."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = [child for _, child in _children(node)]
            size[key] = 1 + sum(size[id(c)] for c in kids)
            height[key] = 1 + max((height[id(c)] for c in kids), default=0)
            continue
        if key in size:
            continue
        if node.tag == _INT_TAG and isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_INT_DIGITS:
            return (node.start_mark.line + 1, _path_to(root, node),
                    f"a number of {len(node.value)} digits (at most {MAX_INT_DIGITS})")
        on_path.add(key)
        stack.append((node, True))
        for _, child in _children(node):
            if id(child) in on_path:
                return (child.start_mark.line + 1, _path_to(root, child),
                        "a value contains itself through an alias (a recursive anchor); write it out instead")
            if id(child) not in size:
                stack.append((child, False))
    if height[id(root)] > MAX_DEPTH:
        node, loc = _descend(root, lambda n: height[id(n)], MAX_DEPTH)
        return node.start_mark.line + 1, loc, f"nests more than {MAX_DEPTH} levels deep"
    if size[id(root)] > len(size) + ALIAS_BUDGET:
        node, loc = _descend(root, lambda n: size[id(n)], None, ALIAS_BUDGET)
        return (node.start_mark.line + 1, loc,
                f"aliases expand this value to {size[id(node)]:,} values (more than {ALIAS_BUDGET:,} beyond "
                "those written in the file: an alias bomb?); write the values out instead")
    return None


def _descend(root: yaml.Node, measure: typing.Callable[[yaml.Node], int], steps: int | None,
             floor: int = 0) -> tuple[yaml.Node, Loc]:
    """From ``root``, follow the child with the largest ``measure`` (``steps`` times, or while it exceeds
    ``floor``); the node reached and its key path."""
    node, loc = root, ()
    while steps is None or len(loc) < steps:
        kids = [(k, c) for k, c in _children(node) if k is not None]
        if not kids:
            break
        k, child = max(kids, key=lambda kc: measure(kc[1]))
        if steps is None and measure(child) <= floor:
            break
        node, loc = child, (*loc, k)
    return node, loc  # type: ignore[return-value]


def _path_to(root: yaml.Node, target: yaml.Node) -> Loc:
    """Key path of the first occurrence of ``target`` under ``root`` (breadth first, each node once)."""
    seen = {id(root)}
    queue: list[tuple[yaml.Node, Loc]] = [(root, ())]
    for node, loc in queue:
        if node is target:
            return loc
        for k, child in _children(node):
            if k is not None and id(child) not in seen:
                seen.add(id(child))
                queue.append((child, (*loc, k)))
    return ()


def duplicate_keys(root: yaml.Node) -> list[tuple[Loc, int, str]]:
    """(key path, line, message) of each key written twice in one mapping: YAML keeps only the last one, so
    the first would be ignored without a word. Each node is visited once (aliases share theirs)."""
    out: list[tuple[Loc, int, str]] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                    line = key_node.start_mark.line + 1
                    if key_node.value in first:
                        out.append(((*loc, key_node.value), line,
                                    f"duplicate key (also on line {first[key_node.value]}); YAML would keep only "
                                    "the last one"))
                    else:
                        first[key_node.value] = line
        stack.extend((child, (*loc, k)) for k, child in _children(node) if k is not None)
    return out


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

class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing ``[``/``{`` nested deeper than ``MAX_DEPTH`` as it scans them: its scanner
    costs per token in proportion to the flow depth, so ``[[[[...]]]]`` thousands deep took seconds before the
    composer could refuse it."""

    def fetch_flow_collection_start(self, TokenClass: typing.Any) -> None:  # PyYAML's signature
        if self.flow_level >= MAX_DEPTH:
            raise _TooDeep(self.get_mark().line + 1)
        super().fetch_flow_collection_start(TokenClass)


def _parse(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """The composed root node and the data constructed from it (one parse), refused before construction when
    the graph is a bomb (``graph_problem``)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        problem = graph_problem(root) if root is not None else None
        if problem is not None:
            line, loc, what = problem
            raise ConfigError([ConfigIssue(filename, line, format_loc(loc), what)])
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def load_config_text(text: str, filename: str = "<config>") -> CtiConfig:
    """Parse and validate YAML text; raise ConfigError listing every problem."""
    try:
        root, data = _parse(text, filename)
    except _TooDeep as exc:
        raise ConfigError([ConfigIssue(filename, exc.line, "", f"not valid YAML here: nests more than {MAX_DEPTH} "
                                       "levels deep")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem_text = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(filename, line, "", f"not valid YAML: {problem_text}")]) from None
    except ValueError as exc:  # a constructor's conversion that slipped past the checks above
        raise ConfigError([ConfigIssue(filename, None, "", f"not valid YAML: {exc}")]) from None
    except RecursionError:  # the composer recurses per level: [[[[...]]]] a thousand deep
        raise ConfigError([ConfigIssue(filename, None, "", f"not valid YAML here: nests more than {MAX_DEPTH} "
                                       "levels deep")]) from None
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
    if root is not None:
        issues += [ConfigIssue(filename, line, format_loc(loc), msg) for loc, line, msg in duplicate_keys(root)]
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
    for loc, tls in cfg.tls_listeners():  # the certificate and key files must be usable now, not at start-up
        try:
            server_context(tls, format_loc(loc))
        except TlsFilesError as exc:
            where = (*loc, exc.key_path.rsplit(".", 1)[-1]) if exc.key_path != format_loc(loc) else loc
            issues.append(ConfigIssue(filename, line_of(lines, where), exc.key_path, exc.message))
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
