"""The floors: which of our packages may import which, and what no one may touch of another's.

Every module of our packages (and of ``bench/``) is parsed with ``ast``; imports are read at module level,
inside functions, under ``if TYPE_CHECKING:`` and as ``importlib.import_module("literal")``. The checks:

(a) the package import graph has no cycle;
(b) each package imports only the packages ``FLOORS`` allows it, each edge with its reason (some edges only
    to named modules: the dialer may import the ACD's events, ``config`` only each package's settings);
(c) no ``from other_package.mod import _private`` and no import of another package's ``_private`` module;
(d) no attribute reach-in: ``x._name`` (one underscore, not a dunder) where ``x`` is not ``self``/``cls``/
    ``super()`` and ``_name`` is not defined in the same module (def, class, assignment, ``self._name = ``,
    ``__slots__``): a heuristic for reading another object's private attributes. Third-party privates our
    code must use are allowlisted by name with a reason;
(e) no module cycle hidden by a function-level import: a function-level import of one of our modules that
    reaches back to the importer (through module-level or other function-level imports) exists only to
    dodge a cycle; and no module-level cycle. (A plain lazy import, say of a heavy third-party library or
    of an optional engine, that closes no cycle is fine; ``TYPE_CHECKING`` imports make no runtime cycle.)

``KNOWN`` lists findings let through for now, each with its reason; an entry no longer found fails the test
so that the list only shrinks. ``TODO(one-house)`` entries are in modules being restructured elsewhere.
The checker is plain functions over ``{path: source}`` so that the self-checks below can feed it small
synthetic trees with a cycle, a floor violation, a private import, a reach-in and a hidden cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Edge:
    """An allowed package edge: why, and (if not empty) the only modules it may import there."""

    reason: str
    only: tuple[str, ...] = ()


KERNEL = Edge("the kernel: AMI, call tracking, events, commands, contract, dispatch, db, config types")
ENGINE_SETTINGS = "config composes each package's settings section into CtiConfig"

# Bottom to top. A package not listed as a key may not be imported by anyone listed here.
FLOORS: dict[str, dict[str, Edge]] = {
    "cti": {},
    "acd": {"cti": KERNEL},
    "ivr": {"cti": KERNEL},
    "screenpop": {"cti": KERNEL,
                  "ivr": Edge("a pop shows what the caller did in the IVR (its events, flows, look-up results)")},
    "dialer": {"cti": KERNEL,
               "acd": Edge("a campaign follows its offers to agents through the ACD's events", ("acd.events",))},
    "kpi": {"cti": KERNEL,
            "acd": Edge("the statistics count the ACD's events (calls waiting, answered, abandoned; agent states)",
                        ("acd.events",)),
            "dialer": Edge("a campaign's figures are the dialer's events, tallied by the dialer's own definitions",
                           ("dialer.events", "dialer.figures")),
            "ivr": Edge("callbacks requested in the IVR count for their queue", ("ivr.events",))},
    "agent_console": {"cti": KERNEL},
    "sim": {"cti": Edge("the simulated PBX speaks the kernel's AMI codec and the dialplan contract")},
    "config": {
        "cti": Edge("config types and the AMI connection's settings"),
        "acd": Edge(ENGINE_SETTINGS, ("acd.settings",)),
        "ivr": Edge(ENGINE_SETTINGS + " (the IVR's section is its flow schema)", ("ivr.flow",)),
        "screenpop": Edge(ENGINE_SETTINGS, ("screenpop.settings",)),
        "dialer": Edge(ENGINE_SETTINGS, ("dialer.settings",)),
        "agent_console": Edge(ENGINE_SETTINGS, ("agent_console.settings",)),
        "sim": Edge(ENGINE_SETTINGS, ("sim.settings",)),
        "kpi": Edge(ENGINE_SETTINGS, ("kpi.settings",)),
    },
    "centre": {pkg: Edge("the application wires every package into processes") for pkg in
               ("cti", "acd", "ivr", "screenpop", "dialer", "kpi", "agent_console", "sim", "config")},
}
# Scanned for private imports (c) and reach-ins (d) only: they sit above everything.
USERS = ("bench",)


@dataclass(frozen=True)
class Private:
    """A third-party or standard-library private attribute our code may read: why, and where (empty: anywhere)."""

    reason: str
    paths: tuple[str, ...] = ()


THIRD_PARTY_PRIVATE: dict[str, Private] = {
    "_replace": Private("NamedTuple's public API (underscored so as not to clash with field names)"),
    "_asdict": Private("NamedTuple's public API"),
    "_fields": Private("NamedTuple's public API"),
    "_SubParsersAction": Private("argparse names the type add_subparsers() returns only privately; each CLI "
                                 "plugin's register(subparsers) is annotated with it"),
    "_asyncioEventloop": Private("Twisted's asyncio reactor has no public accessor for its loop: read in one "
                                 "place, cti.reactor.reactor_loop()", ("cti/reactor.py",)),
}

# Findings let through for now: (check, path, detail) -> reason. Every entry is TODO(one-house): its fix
# belongs to the restructuring of centre/server.py and centre/console_backend.py under way elsewhere.
KNOWN: dict[tuple[str, str, str], str] = {
}


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ImportRef:
    """One import: ``importer`` (dotted module) takes ``target`` (dotted module), or ``name`` from it."""

    importer: str
    path: str
    line: int
    target: str
    name: str | None
    function_level: bool
    type_checking: bool


@dataclass(frozen=True)
class Finding:
    check: str
    path: str
    line: int
    detail: str
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.check, self.path, self.detail)

    def __str__(self) -> str:
        return f"{self.path}:{self.line} [{self.check}] {self.message}"


def module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top(module: str) -> str:
    return module.split(".")[0]


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    def __init__(self, path: str, modules: frozenset[str]) -> None:
        self.path = path
        self.module = module_name(path)
        self.package = self.module if path.endswith("__init__.py") else self.module.rpartition(".")[0]
        self.modules = modules
        self.refs: list[ImportRef] = []
        self.depth = 0
        self.type_checking = 0

    def _resolve(self, dotted: str) -> str:
        """The longest prefix of ``dotted`` that is one of our modules (``dotted`` itself if third-party)."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in self.modules:
                return ".".join(parts[:n])
        return dotted

    def _add(self, node: ast.AST, target: str, name: str | None) -> None:
        self.refs.append(ImportRef(self.module, self.path, getattr(node, "lineno", 0), target, name,
                                   self.depth > 0, self.type_checking > 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_checking += 1
        for child in node.body:
            self.visit(child)
        self.type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, self._resolve(alias.name), None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in self.modules:
                self._add(node, full, None)
            else:
                self._add(node, self._resolve(base), alias.name)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
            isinstance(func, ast.Name) and func.id == "import_module")
        if named and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self._add(node, self._resolve(node.args[0].value), None)
        self.generic_visit(node)


def read_imports(sources: Mapping[str, str]) -> list[ImportRef]:
    modules = frozenset(module_name(p) for p in sources)
    refs: list[ImportRef] = []
    for path, text in sorted(sources.items()):
        visitor = _Imports(path, modules)
        visitor.visit(ast.parse(text, path))
        refs.extend(visitor.refs)
    return refs


# ---------------------------------------------------------------------------------------------- checks
def _cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def check_package_cycles(refs: Iterable[ImportRef], packages: Iterable[str]) -> list[Finding]:
    """(a) The package graph (every kind of import counts) has no cycle."""
    ours = set(packages)
    graph: dict[str, set[str]] = {p: set() for p in ours}
    first: dict[tuple[str, str], ImportRef] = {}
    for r in refs:
        a, b = top(r.importer), top(r.target)
        if a in ours and b in ours and a != b:
            graph[a].add(b)
            first.setdefault((a, b), r)
    out = []
    for component in _cycles(graph):
        edges = [first[(a, b)] for a in component for b in sorted(graph[a]) if b in component]
        witness = "; ".join(f"{r.path}:{r.line} imports {r.target}" for r in edges)
        out.append(Finding("cycle", edges[0].path, edges[0].line, " <-> ".join(component),
                           f"package cycle {' <-> '.join(component)}: {witness}"))
    return out


def check_floors(refs: Iterable[ImportRef], floors: Mapping[str, Mapping[str, Edge]]) -> list[Finding]:
    """(b) Each package imports only what its floor allows."""
    out = []
    for r in refs:
        a, b = top(r.importer), top(r.target)
        if a not in floors or b not in floors or a == b:
            continue
        edge = floors[a].get(b)
        how = "function-level " if r.function_level else "TYPE_CHECKING " if r.type_checking else ""
        if edge is None:
            out.append(Finding("floor", r.path, r.line, r.target,
                               f"{a} may not import {b}: {how}import of {r.target}"))
        elif edge.only and not any(r.target == m or r.target.startswith(m + ".") for m in edge.only):
            out.append(Finding("floor", r.path, r.line, r.target,
                               f"{a} may import only {', '.join(edge.only)} of {b}: {how}import of {r.target}"))
    return out


def check_private_imports(refs: Iterable[ImportRef]) -> list[Finding]:
    """(c) No private name of another package and no private module of another package."""
    out = []
    for r in refs:
        if top(r.importer) == top(r.target):
            continue
        private_parts = [p for p in r.target.split(".") if is_private(p)]
        if private_parts:
            out.append(Finding("private-import", r.path, r.line, r.target,
                               f"imports {r.target}, a private module of another package"))
        if r.name is not None and is_private(r.name):
            out.append(Finding("private-import", r.path, r.line, f"{r.target}.{r.name}",
                               f"imports {r.name}, private to {r.target}"))
    return out


def defined_names(tree: ast.AST) -> set[str]:
    """Names a module defines: functions, classes, assigned names, ``self``/``cls`` attributes, ``__slots__``."""
    names: set[str] = set()

    def target(t: ast.expr) -> None:
        if isinstance(t, ast.Name):
            names.add(t.id)
        elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"):
            names.add(t.attr)
        elif isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                target(e)
        elif isinstance(t, ast.Starred):
            target(t.value)

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                target(t)
            if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
                names.update(c.value for c in ast.walk(node.value)
                             if isinstance(c, ast.Constant) and isinstance(c.value, str))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            target(node.target)
        elif isinstance(node, ast.NamedExpr):
            target(node.target)
    return names


def _is_own(value: ast.expr) -> bool:
    if isinstance(value, ast.Name):
        return value.id in ("self", "cls")
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"


def check_reach_ins(sources: Mapping[str, str], allowed: Mapping[str, Private]) -> list[Finding]:
    """(d) No ``x._name`` of another object whose ``_name`` this module does not define."""
    out = []
    for path, text in sorted(sources.items()):
        tree = ast.parse(text, path)
        own = defined_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not is_private(node.attr) or _is_own(node.value):
                continue
            if node.attr in own:
                continue
            grant = allowed.get(node.attr)
            if grant is not None and (not grant.paths or path in grant.paths):
                continue
            expr = ast.unparse(node)
            out.append(Finding("reach-in", path, node.lineno, node.attr,
                               f"reads {expr[:80]}: {node.attr} is private to another object"))
    return out


def check_hidden_cycles(refs: Iterable[ImportRef], modules: Iterable[str]) -> list[Finding]:
    """(e) No function-level import of our module that closes a cycle of runtime imports (module-level or
    function-level: two lazy imports can hide one cycle together); and no module-level cycle at all."""
    ours = set(modules)
    refs = [r for r in refs if not r.type_checking and r.target in ours and r.target != r.importer]
    graph: dict[str, set[str]] = {m: set() for m in ours}
    module_level: dict[str, set[str]] = {m: set() for m in ours}
    for r in refs:
        graph[r.importer].add(r.target)
        if not r.function_level:
            module_level[r.importer].add(r.target)

    def path_between(start: str, goal: str) -> list[str] | None:
        seen = {start}
        frontier: list[list[str]] = [[start]]
        while frontier:
            nxt = []
            for trail in frontier:
                for w in sorted(graph[trail[-1]]):
                    if w == goal:
                        return [*trail, w]
                    if w not in seen:
                        seen.add(w)
                        nxt.append([*trail, w])
            frontier = nxt
        return None

    out = []
    for component in _cycles(module_level):
        out.append(Finding("module-cycle", component[0].replace(".", "/") + ".py", 0, " <-> ".join(component),
                           f"module-level import cycle among {', '.join(component)}"))
    for r in refs:
        if not r.function_level:
            continue
        trail = path_between(r.target, r.importer)
        if trail is not None:
            out.append(Finding("hidden-cycle", r.path, r.line, r.target,
                               f"function-level import of {r.target} hides the cycle "
                               f"{r.importer} -> {' -> '.join(trail)}"))
    return out


def check_tree(sources: Mapping[str, str], floors: Mapping[str, Mapping[str, Edge]],
               users: Iterable[str] = (), allowed: Mapping[str, Private] | None = None) -> list[Finding]:
    """Every check over ``{relative path: source}``; ``users`` are scanned for (c) and (d) only."""
    users = set(users)
    refs = read_imports(sources)
    packaged = [r for r in refs if top(r.importer) not in users]
    modules = [module_name(p) for p in sources if p.split("/")[0] not in users]
    return [*check_package_cycles(packaged, floors), *check_floors(packaged, floors),
            *check_private_imports(refs), *check_reach_ins(sources, allowed or {}),
            *check_hidden_cycles(packaged, modules)]


def our_sources() -> dict[str, str]:
    sources = {}
    for pkg in (*FLOORS, *USERS):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            sources[path.relative_to(ROOT).as_posix()] = path.read_text()
    return sources


# ---------------------------------------------------------------------------------------------- the tree
def test_the_tree_keeps_its_floors() -> None:
    findings = check_tree(our_sources(), FLOORS, USERS, THIRD_PARTY_PRIVATE)
    new = [str(f) for f in findings if f.key not in KNOWN]
    assert new == [], "\n".join(new)
    stale = sorted(set(KNOWN) - {f.key for f in findings})
    assert stale == [], f"no longer found, remove from KNOWN: {stale}"


def test_every_package_on_disk_has_a_floor() -> None:
    """A new top-level package must be given its floor here (or be listed as a user such as bench/)."""
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk == set(FLOORS) | set(USERS)


def test_floors_are_bottom_to_top_and_documented() -> None:
    """Every allowed edge has a reason and points to a package listed before (lower than) its importer,
    and docs/architecture.md's floors table names each package."""
    order = list(FLOORS)
    for pkg, edges in FLOORS.items():
        for other, edge in edges.items():
            assert edge.reason and order.index(other) < order.index(pkg), (pkg, other)
            assert all(top(m) == other for m in edge.only), (pkg, other, edge.only)
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert all(f"`{pkg}/`" in doc for pkg in FLOORS)
    assert all(reason.startswith("TODO(one-house): ") for reason in KNOWN.values())
    assert all(p.reason for p in THIRD_PARTY_PRIVATE.values())


# ---------------------------------------------------------------------------------------------- self-checks
FLOORS_AB: dict[str, dict[str, Edge]] = {"a": {}, "b": {"a": Edge("b is above a", ("a.public",))}}


def _checks(sources: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in check_tree(sources, FLOORS_AB, ("bench",), THIRD_PARTY_PRIVATE):
        out.setdefault(f.check, []).append(f"{f.path}:{f.line} {f.detail}")
    return out


BASE = {"a/__init__.py": "", "a/public.py": "VALUE = 1\n", "a/_inner.py": "X = 1\n",
        "b/__init__.py": "", "b/use.py": "from a.public import VALUE\n"}


def test_a_clean_synthetic_tree_passes() -> None:
    assert _checks(BASE) == {}


def test_the_checker_flags_a_package_cycle_and_a_floor_violation() -> None:
    # a function-level import counts for the package graph too: that is how a floor is dodged
    found = _checks({**BASE, "a/up.py": "def f():\n    from b.use import VALUE\n    return VALUE\n"})
    assert found["cycle"] == ["a/up.py:2 a <-> b"]
    assert found["floor"] == ["a/up.py:2 b.use"]
    found = _checks({**BASE, "b/more.py": "import importlib\nm = importlib.import_module('a.other')\n",
                     "a/other.py": ""})
    assert found == {"floor": ["b/more.py:2 a.other"]}  # b may import only a.public


def test_the_checker_flags_private_imports() -> None:
    found = _checks({**BASE, "b/p.py": "from a.public import _helper\nfrom a import _inner\nimport a._inner\n",
                     "bench/x.py": "from ..a.public import _helper\n", "bench/__init__.py": "",
                     "a/same.py": "from a.public import _ok_inside_a\n"})
    assert found == {"private-import": ["b/p.py:1 a.public._helper", "b/p.py:2 a._inner", "b/p.py:3 a._inner",
                                        "bench/x.py:1 a.public._helper"],
                     "floor": ["b/p.py:2 a._inner", "b/p.py:3 a._inner"]}


def test_the_checker_flags_reach_ins_only() -> None:
    source = ("class C:\n"
              "    __slots__ = ('_slot',)\n"
              "    def __init__(self, other):\n"
              "        self._mine = other._theirs\n"          # reach-in
              "        self._slot = other._mine\n"            # same-module name: fine
              "        super()._base()\n"                     # own: fine
              "    def copy(self):\n"
              "        return self._replace(x=1).__dict__\n"  # allowlisted and dunder: fine
              "def f(acd):\n"
              "    return len(acd.router._agents)\n")        # reach-in
    # an allowlisted third-party private is let through only where it is allowed
    assert _checks({**BASE, "b/r.py": source, "bench/__init__.py": "",
                    "bench/s.py": "print(x._y, reactor._asyncioEventloop)\n"}) == {
        "reach-in": ["b/r.py:4 _theirs", "b/r.py:10 _agents", "bench/s.py:1 _y", "bench/s.py:1 _asyncioEventloop"]}


def test_the_checker_flags_a_cycle_hidden_by_a_function_level_import() -> None:
    found = _checks({**BASE, "b/one.py": "from b import two\n",
                     "b/two.py": "def f():\n    from b.one import X\n    import json\n    return X, json\n"})
    assert found == {"hidden-cycle": ["b/two.py:2 b.one"]}
    # two lazy imports hiding one cycle together: both are flagged
    found = _checks({**BASE, "b/one.py": "def f():\n    from b import two\n",
                     "b/two.py": "from b import three\n", "b/three.py": "def g():\n    from b import one\n"})
    assert found == {"hidden-cycle": ["b/one.py:2 b.two", "b/three.py:2 b.one"]}
    # a lazy import that closes no cycle is fine; a module-level cycle is flagged as such
    assert _checks({**BASE, "b/one.py": "", "b/two.py": "def f():\n    from b import one\n"}) == {}
    found = _checks({**BASE, "b/one.py": "from b import two\n", "b/two.py": "from b import one\n"})
    assert found == {"module-cycle": ["b/one.py:0 b.one <-> b.two"]}
    # TYPE_CHECKING imports do not make runtime cycles
    assert _checks({**BASE, "b/one.py": "from b import two\n",
                    "b/two.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from b import one\n"}) == {}
