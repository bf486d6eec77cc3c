"""A checker for a layer table: which modules of `mailfort` may import which.

It reads every module with `ast` (nothing is imported) and counts every import: at the top of a
module, inside a function, and under `TYPE_CHECKING` (a type-level cycle is still a cycle a reader
has to hold in their head). The table itself, and the tests, are in tests/unit/test_layers.py.

Rules:

1. "placed": every module belongs to one layer;
2. "may import": a module imports only from its own layer and the layers its row lists, bar
   named single edges (`Rules.exceptions`, each with its reason);
3. "engines" / "drivers": a store engine is imported only by the store layer and the wiring,
   never by the other engine; a database driver only by the store layer;
4. "pure": a pure module reaches none of its forbidden names through any chain of imports
   (importing `a.b.c` runs `a` and `a.b` first, so their imports count too);
5. "no cycles": no cycle between modules.

A violation names the module, the line, the import and the rule.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = "mailfort"


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    # Dotted module names, each holding its submodules ("mailfort.status" holds
    # "mailfort.status.signals"); a trailing "*" matches any name that starts so.
    modules: tuple[str, ...]
    may_import: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    layers: tuple[Layer, ...]
    leaves: str  # the layer of the package root (`mailfort/__init__.py`)
    wiring: str  # the layer that may import every other
    store: str  # the layer that holds the engines, and the only one that may use a driver
    # Patterns of the engines' modules, flat files or subpackages alike.
    engines: tuple[str, ...]
    drivers: tuple[str, ...]
    # Module pattern → names it must not reach (top-level packages or dotted `mailfort` ones).
    pure: Mapping[str, tuple[str, ...]]
    # (importer, imported) → why the table allows this one edge.
    exceptions: Mapping[tuple[str, str], str]


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module
    target: str  # a module of `mailfort`, or the top-level name of anything else
    line: int
    where: str  # "", " (inside a function)" or " (under TYPE_CHECKING)"

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}{self.where}"


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    edge: Import | None
    detail: str

    def __str__(self) -> str:
        head = f"{self.edge}" if self.edge else self.detail
        tail = f": {self.detail}" if self.edge else ""
        return f"[{self.rule}] {head}{tail}"


def read_sources(src: Path) -> dict[str, str]:
    """Every module under `src/mailfort`, by dotted name (a package by its own name)."""
    sources = {}
    for path in sorted((src / "mailfort").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def _is_package(name: str, sources: Mapping[str, str]) -> bool:
    return any(other.startswith(name + ".") for other in sources)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with where it sits: module level, a function, TYPE_CHECKING."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, where
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, where or " (inside a function)")
        elif isinstance(child, ast.If) and _type_checking(child):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), " (under TYPE_CHECKING)")
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), where)
        else:
            yield from _walk(child, where)


def imports(sources: Mapping[str, str]) -> list[Import]:
    """The imports of every module, resolved: `from pkg import sub` names the submodule."""
    found = []
    for module, text in sources.items():
        package = module if _is_package(module, sources) else module.rpartition(".")[0]
        for node, where in _walk(ast.parse(text, filename=module), ""):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join([*base, node.module] if node.module else base)
                else:
                    origin = node.module or ""
                targets = [
                    f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in sources else origin
                    for alias in node.names
                ]
            for target in dict.fromkeys(targets):
                if target != ROOT and not target.startswith(ROOT + "."):
                    target = target.partition(".")[0]
                elif target not in sources:  # `import a.b.c` of a name, not a module
                    while target not in sources and "." in target:
                        target = target.rpartition(".")[0]
                found.append(Import(module, target, node.lineno, where))
    return found


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return module.startswith(pattern[:-1])
    return module == pattern or module.startswith(pattern + ".")


def layer_of(module: str, rules: Rules) -> Layer | None:
    """The layer whose longest pattern matches; the package root is a leaf."""
    if module == ROOT:
        return next(layer for layer in rules.layers if layer.name == rules.leaves)
    best: tuple[int, Layer] | None = None
    for layer in rules.layers:
        for prefix in layer.modules:
            if _matches(module, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return best[1] if best else None


def _engine(module: str, rules: Rules) -> str | None:
    return next((engine for engine in rules.engines if _matches(module, engine)), None)


def check_layers(edges: Iterable[Import], modules: Iterable[str], rules: Rules) -> list[Violation]:
    """Rules 1–3: every module placed, every import allowed by the table, engines kept in."""
    found = [
        Violation("placed", None, f"{module} belongs to no layer: add it to LAYERS")
        for module in modules
        if layer_of(module, rules) is None
    ]
    for edge in edges:
        if not edge.target.startswith(ROOT):
            owner = layer_of(edge.module, rules)
            if edge.target in rules.drivers and (owner is None or owner.name != rules.store):
                found.append(
                    Violation("drivers", edge, f"only {rules.store} may use a database driver")
                )
            continue
        source, target = layer_of(edge.module, rules), layer_of(edge.target, rules)
        if source is None or target is None or (edge.module, edge.target) in rules.exceptions:
            continue
        allowed = (
            source.name == rules.wiring or target is source or target.name in source.may_import
        )
        if not allowed:
            found.append(
                Violation(
                    "may import",
                    edge,
                    f"layer {source.name} may import {', '.join(source.may_import) or 'nothing'}"
                    f" (and itself), not {target.name}",
                )
            )
        engine, own = _engine(edge.target, rules), _engine(edge.module, rules)
        if engine and own and engine != own:
            found.append(Violation("engines", edge, "one engine must not import another"))
        elif engine and not own and source.name not in (rules.store, rules.wiring):
            found.append(
                Violation(
                    "engines",
                    edge,
                    f"layer {source.name} must use the store's role interfaces, not an engine",
                )
            )
    return found


def reach(module: str, edges: Iterable[Import]) -> dict[str, list[Import]]:
    """Every name `module` reaches through chains of imports, with one chain that gets there.
    Importing `a.b.c` runs `a` and `a.b` first, so a package's own imports count too."""
    out: dict[str, list[Import]] = {}
    for edge in edges:
        out.setdefault(edge.module, []).append(edge)
    chains: dict[str, list[Import]] = {module: []}
    todo = [module]
    while todo:
        current = todo.pop()
        parents = [current.rsplit(".", n)[0] for n in range(1, current.count("."))]
        steps = [*out.get(current, [])]
        for parent in parents:
            steps.extend(out.get(parent, []))
        for edge in steps:
            if edge.target not in chains:
                chains[edge.target] = [*chains[current], edge]
                todo.append(edge.target)
    return chains


def check_pure(edges: Iterable[Import], modules: Iterable[str], rules: Rules) -> list[Violation]:
    """Rule 4: a pure module reaches none of its forbidden names, by any chain of imports."""
    edges = list(edges)
    found = []
    for module in modules:
        forbidden = next(
            (bad for pattern, bad in rules.pure.items() if _matches(module, pattern)), ()
        )
        if not forbidden:
            continue
        for name, chain in reach(module, edges).items():
            if chain and any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                path = " → ".join(str(step) for step in chain)
                found.append(
                    Violation("pure", chain[-1], f"{module} is pure logic and reaches it: {path}")
                )
    return found


def check_cycles(edges: Iterable[Import], modules: Iterable[str]) -> list[Violation]:
    """Rule 5: no cycle between modules (Tarjan's strongly connected components)."""
    graph: dict[str, list[Import]] = {module: [] for module in modules}
    for edge in edges:
        if edge.target in graph and edge.target != edge.module:
            graph[edge.module].append(edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for edge in graph[module]:
            if edge.target not in index:
                visit(edge.target)
                low[module] = min(low[module], low[edge.target])
            elif edge.target in stack:
                low[module] = min(low[module], index[edge.target])
        if low[module] == index[module]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == module:
                    break
            if len(members) > 1:
                loop = _shortest_loop(min(members), set(members), graph)
                found.append(
                    Violation("no cycles", None, "import cycle: " + " → ".join(map(str, loop)))
                )

    # Deep enough for the longest import chain, then back: the limit is the whole process's,
    # and code under test (the email package's parser on hostile input) depends on it.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for module in graph:
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _shortest_loop(
    start: str, members: set[str], graph: Mapping[str, list[Import]]
) -> list[Import]:
    """The shortest chain of imports from `start` back to itself, within one cycle."""
    chains: dict[str, list[Import]] = {start: []}
    todo = [start]
    while todo:
        following = []
        for module in todo:
            for edge in graph[module]:
                if edge.target == start:
                    return [*chains[module], edge]
                if edge.target in members and edge.target not in chains:
                    chains[edge.target] = [*chains[module], edge]
                    following.append(edge.target)
        todo = following
    raise AssertionError(f"{start} is in no cycle")


def check(sources: Mapping[str, str], rules: Rules) -> list[Violation]:
    """Every rule over every module of `sources` (dotted name → source text)."""
    edges = imports(sources)
    return [
        *check_layers(edges, sources, rules),
        *check_pure(edges, sources, rules),
        *check_cycles(edges, sources),
    ]
