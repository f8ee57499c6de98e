"""Dialplan model for the simulated PBX: contexts/extensions/priorities, YAML and .conf loaders,
extension pattern matching, ``${...}`` substitution and ``$[...]`` expressions. Pure: no I/O besides
reading the files it is asked to load, no clock, no Twisted, no other sim module.

Asterisk semantics followed here (pbx.c, ast_expr2.y):
- ``_`` patterns: ``X`` 0-9, ``Z`` 1-9, ``N`` 2-9, ``[a-z0-9]`` sets, ``.`` one or more of anything,
  ``!`` zero or more; an exact extension wins over a pattern, and among patterns the more specific
  (fewer wildcards, longer) wins.
- ``${VAR}``, ``${VAR:offset:length}``, ``${FUNC(args)}`` and ``$[expr]`` nest; the innermost is
  expanded first. Variable names are case-sensitive, function names are not.
- ``$[ ]`` compares numerically when both sides are numbers, as strings otherwise; ``"`` quotes are
  stripped from string operands. Results are ``1``/``0``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# A conf/YAML file bigger than this is refused (it is read whole).
MAX_DIALPLAN_BYTES = 1_000_000
# Nesting deeper than this in ${...}/$[...] is refused rather than recursing without bound.
MAX_NESTING = 32


class DialplanError(ValueError):
    """A dialplan file or expression could not be understood; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Step:
    """One priority: ``number``, optional ``label`` (``n(label)``), application name and raw argument."""

    number: int
    app: str
    data: str
    label: str | None = None


@dataclass(slots=True)
class Extension:
    """An extension (exact name or ``_`` pattern) and its priorities in order."""

    name: str
    steps: list[Step] = field(default_factory=list)

    def step(self, number: int) -> Step | None:
        for s in self.steps:
            if s.number == number:
                return s
        return None

    def label(self, name: str) -> int | None:
        for s in self.steps:
            if s.label == name:
                return s.number
        return None


@dataclass(slots=True)
class Context:
    """A named context holding extensions in file order."""

    name: str
    extensions: dict[str, Extension] = field(default_factory=dict)


@dataclass(slots=True)
class Dialplan:
    """All contexts plus the ``[globals]`` variables, and the PBX's ``features.conf`` [featuremap]
    (feature name -> DTMF code) where the dialplan's scenario sets one."""

    contexts: dict[str, Context] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)

    def find(self, context: str, exten: str) -> Extension | None:
        """The extension of ``context`` that ``exten`` dials, Asterisk's matching rules."""
        ctx = self.contexts.get(context)
        if ctx is None:
            return None
        exact = ctx.extensions.get(exten)
        if exact is not None and not exact.name.startswith("_"):
            return exact
        best: tuple[tuple[int, int], Extension] | None = None
        for ext in ctx.extensions.values():
            if ext.name.startswith("_") and pattern_matches(ext.name, exten):
                rank = _pattern_rank(ext.name)
                if best is None or rank < best[0]:
                    best = (rank, ext)
        return best[1] if best else None

    def exists(self, context: str, exten: str, priority: int = 1) -> bool:
        ext = self.find(context, exten)
        return ext is not None and ext.step(priority) is not None

    def matches_more(self, context: str, exten: str) -> bool:
        """ast_matchmore_extension(): could more digits after ``exten`` still dial something here?
        (Digit collection, e.g. an attended transfer's, stops only when this is false.)"""
        ctx = self.contexts.get(context)
        if ctx is None:
            return False
        for name in ctx.extensions:
            if not name.startswith("_"):
                if len(name) > len(exten) and name.startswith(exten):
                    return True
                continue
            for n in range(1, 21):
                if any(pattern_matches(name, exten + d * n) for d in "0123456789*#"):
                    return True
        return False


# ---------------------------------------------------------------------------------------
# patterns
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 1  # skip "_"
    p = pattern
    while i < len(p):
        c = p[i]
        if c in "xX":
            out.append("[0-9]")
        elif c in "zZ":
            out.append("[1-9]")
        elif c in "nN":
            out.append("[2-9]")
        elif c == ".":
            out.append(".+")
        elif c == "!":
            out.append(".*")
        elif c == "[":
            j = p.find("]", i)
            if j < 0:
                raise DialplanError(f"unterminated [ in pattern {pattern!r}")
            body = p[i + 1 : j]
            out.append("[" + "".join("\\" + ch if ch in "\\^]" else ch for ch in body) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


_PATTERN_CACHE: dict[str, re.Pattern[str]] = {}


def pattern_matches(pattern: str, exten: str) -> bool:
    """True when extension ``exten`` matches ``pattern`` (an ``_`` pattern or an exact name)."""
    if not pattern.startswith("_"):
        return pattern == exten
    rx = _PATTERN_CACHE.get(pattern)
    if rx is None:
        rx = _PATTERN_CACHE[pattern] = _pattern_regex(pattern)
    return rx.match(exten) is not None


def _pattern_rank(pattern: str) -> tuple[int, int]:
    wild = sum(1 for c in pattern if c in ".!")
    return (wild, -len(pattern))


# ---------------------------------------------------------------------------------------
# application strings
_APP_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*\Z", re.S)


def split_app(text: str) -> tuple[str, str]:
    """``"Dial(PJSIP/1001,15,m)"`` -> ``("Dial", "PJSIP/1001,15,m")``; ``"Answer"`` -> ``("Answer", "")``."""
    m = _APP_RE.match(text)
    if not m:
        raise DialplanError(f"not an application call: {text!r}")
    return m.group(1), m.group(2) or ""


def split_args(data: str, sep: str = ",") -> list[str]:
    """Split application arguments on ``sep`` outside ``()``, ``[]``, ``{}`` and double quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    cur: list[str] = []
    for ch in data:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}" and depth > 0:
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


# ---------------------------------------------------------------------------------------
# loaders
def _add_step(dp: Dialplan, context: str, exten: str, prio: str, app_text: str, where: str) -> None:
    ctx = dp.contexts.setdefault(context, Context(context))
    ext = ctx.extensions.get(exten)
    label = None
    m = re.fullmatch(r"\s*(\w+|n)\s*(?:\((\w+)\))?\s*", prio)
    if not m:
        raise DialplanError(f"{where}: bad priority {prio!r}")
    if m.group(2):
        label = m.group(2)
    token = m.group(1)
    if token == "n":
        if ext is None or not ext.steps:
            raise DialplanError(f"{where}: priority 'n' with no previous priority")
        number = ext.steps[-1].number + 1
    elif token.isdigit():
        number = int(token)
    else:
        raise DialplanError(f"{where}: bad priority {prio!r}")
    if ext is None:
        ext = ctx.extensions[exten] = Extension(exten)
    if ext.step(number) is not None:
        raise DialplanError(f"{where}: duplicate priority {number} for {exten}@{context}")
    app, data = split_app(app_text)
    ext.steps.append(Step(number, app, data, label))


def parse_extensions_conf(text: str, source: str = "extensions.conf") -> Dialplan:
    """Parse the subset of ``extensions.conf`` syntax our shipped dialplan uses: ``[context]``,
    ``exten => pattern,prio,App(args)``, ``same => n(label),App(args)``, ``[globals]`` and
    ``;`` comments (``\\;`` is a literal semicolon)."""
    if len(text) > MAX_DIALPLAN_BYTES:
        raise DialplanError(f"{source}: larger than {MAX_DIALPLAN_BYTES} bytes")
    dp = Dialplan()
    context: str | None = None
    last_exten: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{source}:{lineno}"
        line = re.sub(r"(?<!\\);.*", "", raw).replace("\\;", ";").strip()
        if not line:
            continue
        if line.startswith("["):
            m = re.fullmatch(r"\[([^\]]+)\].*", line)
            if not m:
                raise DialplanError(f"{where}: bad context header")
            context = m.group(1).strip()
            last_exten = None
            if context not in ("general", "globals"):
                dp.contexts.setdefault(context, Context(context))
            continue
        if context is None:
            raise DialplanError(f"{where}: line outside any [context]")
        if context == "globals":
            key, sep, value = line.partition("=")
            if not sep:
                raise DialplanError(f"{where}: expected NAME=value in [globals]")
            dp.globals[key.strip()] = value.strip()
            continue
        if context == "general":
            continue
        key, sep, rest = line.partition("=>")
        if not sep:
            raise DialplanError(f"{where}: expected 'exten =>' or 'same =>'")
        key = key.strip()
        rest = rest.strip()
        if key == "exten":
            exten, _, rest = rest.partition(",")
            exten = exten.strip()
            last_exten = exten
        elif key == "same":
            if last_exten is None:
                raise DialplanError(f"{where}: 'same =>' before any 'exten =>'")
            exten = last_exten
        else:
            raise DialplanError(f"{where}: unsupported keyword {key!r}")
        prio, _, app_text = rest.partition(",")
        _add_step(dp, context, exten, prio, app_text.strip(), where)
    return dp


_LABEL_PREFIX = re.compile(r"\s*\((\w+)\)\s*(.*)\Z", re.S)


def dialplan_from_data(data: object, source: str = "dialplan.yaml") -> Dialplan:
    """Build a dialplan from the YAML structure::

        globals: {NAME: value}
        features: {atxfer: "*2"}       # features.conf [featuremap]; Asterisk's defaults otherwise
        contexts:
          context-name:
            "_[+0-9].":
              - NoOp(...)
              - (label) GotoIf(...)     # a leading "(label)" names the priority
    """
    if not isinstance(data, dict):
        raise DialplanError(f"{source}: top level must be a mapping with 'contexts'")
    unknown = set(data) - {"globals", "contexts", "features"}
    if unknown:
        raise DialplanError(f"{source}: unknown top-level keys {sorted(unknown)}")
    dp = Dialplan()
    glob = data.get("globals") or {}
    if not isinstance(glob, dict):
        raise DialplanError(f"{source}: globals must be a mapping")
    dp.globals = {str(k): "" if v is None else str(v) for k, v in glob.items()}
    features = data.get("features") or {}
    if not isinstance(features, dict):
        raise DialplanError(f"{source}: features must be a mapping of feature name to DTMF code")
    dp.features = {str(k): "" if v is None else str(v) for k, v in features.items()}
    contexts = data.get("contexts")
    if not isinstance(contexts, dict):
        raise DialplanError(f"{source}: contexts must be a mapping")
    for cname, extens in contexts.items():
        dp.contexts.setdefault(str(cname), Context(str(cname)))
        if not isinstance(extens, dict):
            raise DialplanError(f"{source}: context {cname}: must map extensions to lists of steps")
        for exten, steps in extens.items():
            if not isinstance(steps, list) or not steps:
                raise DialplanError(f"{source}: {exten}@{cname}: must be a non-empty list of steps")
            for i, item in enumerate(steps, 1):
                if not isinstance(item, str):
                    raise DialplanError(f"{source}: {exten}@{cname} step {i}: must be a string")
                m = _LABEL_PREFIX.match(item)
                prio = "1" if i == 1 else "n"
                text = item
                if m:
                    prio += f"({m.group(1)})"
                    text = m.group(2)
                _add_step(dp, str(cname), str(exten), prio, text, f"{source}: {exten}@{cname} step {i}")
    return dp


def load_dialplan(path: str | Path) -> Dialplan:
    """Load a dialplan from a ``.yaml``/``.yml`` description or an ``extensions.conf``-style file."""
    p = Path(path)
    if p.stat().st_size > MAX_DIALPLAN_BYTES:
        raise DialplanError(f"{p}: larger than {MAX_DIALPLAN_BYTES} bytes")
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DialplanError(f"{p}: {exc}") from None
        return dialplan_from_data(data, str(p))
    return parse_extensions_conf(text, str(p))


def merge_dialplans(parts: list[Dialplan], sources: list[str] | None = None) -> Dialplan:
    """Several dialplan files as one, as ``#include`` lines in extensions.conf make them: a context
    named in two files holds the extensions of both (the same priority twice is an error), later
    ``[globals]`` and features win."""
    names = sources or [f"dialplan {i + 1}" for i in range(len(parts))]
    out = Dialplan()
    for dp, source in zip(parts, names, strict=True):
        out.globals.update(dp.globals)
        out.features.update(dp.features)
        for cname, ctx in dp.contexts.items():
            into = out.contexts.setdefault(cname, Context(cname))
            for ename, ext in ctx.extensions.items():
                have = into.extensions.get(ename)
                if have is None:
                    into.extensions[ename] = Extension(ename, list(ext.steps))
                    continue
                for step in ext.steps:
                    if have.step(step.number) is not None:
                        raise DialplanError(f"{source}: duplicate priority {step.number} for {ename}@{cname}")
                    have.steps.append(step)
                have.steps.sort(key=lambda s: s.number)
    return out


def load_dialplans(paths: list[Path]) -> Dialplan:
    """Load and merge several dialplan files (``merge_dialplans``), e.g. the shipped dialplan and the
    lab's people (tests/lab/extensions_lab.conf)."""
    return merge_dialplans([load_dialplan(p) for p in paths], [str(p) for p in paths])


DEFAULT_DIALPLAN = Path(__file__).resolve().parent / "dialplan.yaml"


# ---------------------------------------------------------------------------------------
# substitution
VarLookup = Callable[[str], str | None]
FuncCall = Callable[[str, str], str]


def substitute(text: str, var: VarLookup, func: FuncCall, depth: int = 0) -> str:
    """Expand ``${...}`` and ``$[...]`` in ``text``. ``var(name)`` returns a variable or None;
    ``func(NAME, args)`` evaluates a dialplan function (NAME upper-cased)."""
    if "$" not in text:
        return text
    if depth > MAX_NESTING:
        raise DialplanError("substitution nested too deeply")
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("${", i) or text.startswith("$[", i):
            opener = text[i + 1]
            closer = "}" if opener == "{" else "]"
            j = i + 2
            level = 1
            while j < n and level:
                if text.startswith("$" + opener, j):
                    level += 1
                    j += 2
                    continue
                if text[j] == opener and opener == "[":
                    level += 1
                elif text[j] == closer:
                    level -= 1
                    if level == 0:
                        break
                j += 1
            if level:
                # Asterisk leaves an unterminated reference as it is.
                out.append(text[i:])
                break
            inner = substitute(text[i + 2 : j], var, func, depth + 1)
            if opener == "{":
                out.append(_expand_ref(inner, var, func))
            else:
                out.append(evaluate_expression(inner))
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_SUBSTR_RE = re.compile(r"^(.*?):(-?\d+)(?::(-?\d+))?$", re.S)


def _expand_ref(inner: str, var: VarLookup, func: FuncCall) -> str:
    m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$", inner, re.S)
    if m:
        return func(m.group(1).upper(), m.group(2))
    sub = _SUBSTR_RE.match(inner)
    if sub and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\(", inner):
        value = var(sub.group(1)) or ""
        offset = int(sub.group(2))
        length = int(sub.group(3)) if sub.group(3) is not None else None
        start = offset if offset >= 0 else max(len(value) + offset, 0)
        if length is None:
            return value[start:]
        end = start + length if length >= 0 else len(value) + length
        return value[start:end]
    return var(inner) or ""


def check_condition(value: str) -> bool:
    """pbx_checkcondition: empty and numeric zero are false, anything else true."""
    v = value.strip()
    if not v:
        return False
    try:
        return float(v) != 0
    except ValueError:
        return True


# ---------------------------------------------------------------------------------------
# $[ ] expressions: a small precedence-climbing evaluator over Asterisk's operators.
_TOKEN_RE = re.compile(r'\s*(?:("[^"]*")|(::|!=|<=|>=|=~|\|\||&&|[|&=<>+\-*/%!():?])|([^\s|&=<>+\-*/%!():?"]+))')

_BINARY_PREC = {
    "|": 1,
    "&": 2,
    "=": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3,
    "+": 4, "-": 4,
    "*": 5, "/": 5, "%": 5,
    "=~": 6, ":": 6,
}


def _tokens(expr: str) -> list[str]:
    toks: list[str] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if not m or m.end() == pos:
            raise DialplanError(f"bad expression near {expr[pos:]!r}")
        toks.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return toks


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def _binop(op: str, a: str, b: str) -> str:
    if op == "|":
        return a if check_condition(a) else b
    if op == "&":
        return a if check_condition(a) and check_condition(b) else "0"
    if op in ("=", "!=", "<", ">", "<=", ">="):
        na, nb = _num(a), _num(b)
        left: float | str = na if na is not None and nb is not None else a
        right: float | str = nb if na is not None and nb is not None else b
        result = {
            "=": left == right,
            "!=": left != right,
            "<": left < right,  # type: ignore[operator]
            ">": left > right,  # type: ignore[operator]
            "<=": left <= right,  # type: ignore[operator]
            ">=": left >= right,  # type: ignore[operator]
        }[op]
        return "1" if result else "0"
    if op in ("=~", ":"):
        m = re.match(b, a)
        if not m:
            return "0" if not re.compile(b).groups else ""
        return m.group(1) if m.groups() else str(m.end())
    na, nb = _num(a), _num(b)
    if na is None or nb is None:
        raise DialplanError(f"non-numeric operand for {op}: {a!r} {op} {b!r}")
    if op == "+":
        return _fmt(na + nb)
    if op == "-":
        return _fmt(na - nb)
    if op == "*":
        return _fmt(na * nb)
    if nb == 0:
        raise DialplanError("division by zero")
    if op == "/":
        return _fmt(int(na / nb))
    return _fmt(na % nb)


def evaluate_expression(expr: str) -> str:
    """Evaluate the inside of ``$[...]`` (already substituted)."""
    toks = _tokens(expr)
    if not toks:
        return ""
    pos = 0

    def primary() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise DialplanError(f"unexpected end of expression {expr!r}")
        t = toks[pos]
        pos += 1
        if t == "(":
            v = ternary()
            if pos >= len(toks) or toks[pos] != ")":
                raise DialplanError(f"missing ) in {expr!r}")
            pos += 1
            return v
        if t == "!":
            return "0" if check_condition(primary()) else "1"
        if t == "-" and pos < len(toks) and _num(toks[pos]) is not None:
            pos += 1
            return _fmt(-float(toks[pos - 1]))
        if t.startswith('"'):
            return t[1:-1]
        if t in _BINARY_PREC or t in (")", "?", "::"):
            raise DialplanError(f"unexpected {t!r} in {expr!r}")
        return t

    def binary(min_prec: int) -> str:
        nonlocal pos
        left = primary()
        while pos < len(toks) and toks[pos] in _BINARY_PREC and _BINARY_PREC[toks[pos]] >= min_prec:
            op = toks[pos]
            pos += 1
            right = binary(_BINARY_PREC[op] + 1)
            left = _binop(op, left, right)
        return left

    def ternary() -> str:
        nonlocal pos
        cond = binary(1)
        if pos < len(toks) and toks[pos] == "?":
            pos += 1
            a = binary(1)
            if pos < len(toks) and toks[pos] == "::":
                pos += 1
                b = binary(1)
                return a if check_condition(cond) else b
            raise DialplanError(f"expected :: in {expr!r}")
        return cond

    value = ternary()
    if pos != len(toks):
        raise DialplanError(f"trailing tokens in expression {expr!r}")
    return value


# ---------------------------------------------------------------------------------------
# Goto targets
def parse_goto(target: str, context: str, exten: str) -> tuple[str, str, str]:
    """``[[context,]exten,]priority`` -> (context, exten, priority-or-label)."""
    parts = [p.strip() for p in split_args(target)]
    if len(parts) == 1:
        return context, exten, parts[0]
    if len(parts) == 2:
        return context, parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise DialplanError(f"bad goto target {target!r}")


def split_condition(data: str) -> tuple[str, str, str]:
    """``GotoIf``/``IF`` data ``cond?iftrue:iffalse`` -> the three parts (missing ones empty)."""
    cond, q, rest = data.partition("?")
    if not q:
        return cond, "", ""
    parts = split_args(rest, ":")
    true = parts[0]
    false = ":".join(parts[1:]) if len(parts) > 1 else ""
    return cond, true, false
