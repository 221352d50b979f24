"""The import graph of dtls_ossl, built from the code, has no cycle.

Every ``import`` and ``from ... import`` statement of every module counts, wherever it stands:
at module level, inside a function (a deferred import is how a cycle hides: it runs later,
but the two modules still need each other) and under ``if TYPE_CHECKING:``. Type-only edges
count too: they never run, so they cannot break an import, but a module that names another's
types knows that module, and a layering where ``a`` needs ``b``'s types while ``b`` imports
``a`` is the same knot a reader has to untie (``_context`` naming ``DtlsConfiguration`` while
``configuration`` imported ``_context`` was one). The package's lazy attribute table
(``_LAZY`` in ``dtls_ossl/__init__.py``) is a runtime edge written as strings: it is read too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dtls_ossl

PACKAGE = Path(dtls_ossl.__file__).resolve().parent
ROOT = "dtls_ossl"

# Each entry names a cycle a branch in flight is removing; none is left.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    # A .pyi names the compiled _openssl module: a leaf of the graph.
    for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyi")]):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The dtls_ossl module ``name`` loads: itself, or its nearest enclosing module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _lazy_table(tree: ast.Module) -> dict[str, str]:
    """The package's ``_LAZY`` table: attribute name -> the module that defines it."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            table: dict[str, str] = ast.literal_eval(node.value)
            return table
    return {}


def import_graph() -> dict[str, set[str]]:
    """Map each dtls_ossl module to the dtls_ossl modules it imports (any edge, see above)."""
    modules = _modules()
    trees = {m: ast.parse(p.read_text(encoding="utf-8"), str(p)) for m, p in modules.items()}
    # ``from dtls_ossl import openssl_version`` runs the facade's lazy lookup: the edge goes to
    # the module that defines the name, as it does at run time.
    lazy = _lazy_table(trees[ROOT])
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, tree in trees.items():
        is_package = modules[module].stem == "__init__"
        names: list[str] = list(lazy.values()) if module == ROOT else []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                for alias in node.names:
                    # ``from pkg import sub`` loads pkg.sub when that is a module.
                    sub = f"{base}.{alias.name}"
                    if sub in modules:
                        names.append(sub)
                    elif base == ROOT and alias.name in lazy:
                        names.append(lazy[alias.name])
                    else:
                        names.append(base)
        for name in names:
            if name != ROOT and not name.startswith(ROOT + "."):
                continue
            target = _target(name, modules)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _path_through(graph: dict[str, set[str]], component: list[str]) -> str:
    """One closed import path inside ``component``, for the failure message."""
    members = set(component)
    start = component[0]
    seen = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return " -> ".join([*seen[v], start])
            if w not in seen:
                seen[w] = [*seen[v], w]
                todo.append(w)
    return " <-> ".join(component)  # pragma: no cover - a component always closes


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    cycles = [c for c in find_cycles(graph) if frozenset(c) not in KNOWN_CYCLES]
    assert cycles == [], "import cycles:\n" + "\n".join(_path_through(graph, c) for c in cycles)


def test_known_cycles_are_still_cycles() -> None:
    # An exception that no longer applies must be dropped, not left to hide a new cycle.
    found = {frozenset(c) for c in find_cycles(import_graph())}
    assert found >= KNOWN_CYCLES


def test_graph_sees_deferred_and_type_checking_imports() -> None:
    graph = import_graph()
    # connection imports configuration at module level; the package's lazy table names the
    # connection; _netcli imports the aio layer inside run_server and configuration only for
    # types: each kind of edge is seen.
    assert "dtls_ossl.configuration" in graph["dtls_ossl.connection"]
    assert "dtls_ossl.connection" in graph["dtls_ossl"]
    assert "dtls_ossl.aio" in graph["dtls_ossl._netcli"]
    assert "dtls_ossl.webrtc.certificate" in graph["dtls_ossl._netcli"]


def test_find_cycles_reports_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert _path_through(graph, ["a", "b", "c"]) == "a -> b -> c -> a"
