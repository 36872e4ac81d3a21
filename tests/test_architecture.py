"""The layer rules of docs/architecture.md, checked on the source itself.

Imports are read with ``ast`` (module level and inside functions alike, so a lazy import cannot hide a
cycle or a forbidden edge); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fabguard"

# What each layer may import of ours, besides itself and the top-level ``fabguard`` package (its version).
# Keep in step with the table in docs/architecture.md.
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "ledger": frozenset({"domain"}),
    "pki": frozenset({"domain"}),
    "firmware": frozenset({"domain", "pki"}),
    "analytics": frozenset({"domain"}),
    "labels": frozenset({"domain"}),
    "store": frozenset({"domain", "ledger", "analytics"}),
    "service": frozenset({"domain", "ledger", "pki", "firmware", "analytics", "labels", "store"}),
    "runtime": frozenset({"domain", "ledger", "pki", "firmware", "analytics", "store", "service"}),
    "web": frozenset(),
    "api": frozenset({"domain", "ledger", "pki", "firmware", "labels", "service", "runtime", "web"}),
    "fixture": frozenset(),
    "cli": frozenset({"domain", "ledger", "pki", "firmware", "labels", "service", "runtime", "api", "fixture"}),
}
MAX_LINES = 400
# Generated or data-like modules the size rule does not apply to.
SIZE_EXEMPT = ("fabguard/store/migrations/",)
# A function longer than this is split into named steps (the size rule's exemptions apply).
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import that can run."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), module, is_package)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fabguard":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "fabguard":
                continue
            yield target, node.lineno
            # ``from fabguard.pkg import mod`` imports the submodule ``fabguard.pkg.mod`` when there is one.
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno
        else:
            yield from _imports(node, module, is_package)


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: dict[str, int] = {}
        for target, line in _imports(tree, name, path.name == "__init__.py"):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_row_in_the_layer_table() -> None:
    layers = {_layer(m) for m in _modules()} - {""}
    assert layers <= set(ALLOWED), f"add {sorted(layers - set(ALLOWED))} to ALLOWED and docs/architecture.md"


def test_layers_import_only_what_the_table_allows() -> None:
    bad = []
    for module, edges in _graph().items():
        here = _layer(module)
        for target, line in edges.items():
            there = _layer(target)
            if there in ("", here):
                continue
            if there not in ALLOWED.get(here, frozenset()):
                bad.append(f"{module}:{line} imports {target} ({here} -> {there})")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(sorted(bad))


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _is_ancestor_package(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def test_no_import_cycles_not_even_through_lazy_imports() -> None:
    # A package's __init__ re-exporting its own submodules is not a cycle between modules.
    graph = {m: {t: n for t, n in e.items() if not _is_ancestor_package(t, m)} for m, e in _graph().items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def test_no_module_grows_past_about_400_lines() -> None:
    big = []
    for path in _modules().values():
        if any(part in path.as_posix() for part in SIZE_EXEMPT):
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            big.append(f"{path.relative_to(SRC)}: {lines} lines")
    assert not big, "split these by what they do:\n" + "\n".join(big)


def test_no_function_grows_past_80_lines() -> None:
    long = []
    for path in _modules().values():
        if any(part in path.as_posix() for part in SIZE_EXEMPT):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "split these into named steps:\n" + "\n".join(long)


# service/ is cut by feature (ADR 0013): what each slice may import of its siblings. ``core`` imports no
# slice; every slice may import ``core``. Keep in step with the slice table in docs/architecture.md.
SLICES: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "access": frozenset({"core"}),
    "authority": frozenset({"core", "approvals"}),
    "catalog": frozenset({"core", "access", "approvals", "authority"}),
    "provisioning": frozenset({"core", "authority"}),
    "ledger": frozenset({"core", "access", "authority"}),
    "agent": frozenset({"core", "approvals", "authority", "ledger"}),
    "approvals": frozenset({"core", "access"}),
    "field": frozenset({"core", "authority"}),
    "firmware": frozenset({"core", "access"}),
    "royalties": frozenset({"core", "ledger", "approvals", "authority"}),
    "compliance": frozenset({"core", "firmware", "ledger"}),
    "handoff": frozenset({"core", "authority", "ledger"}),
    "analytics": frozenset({"core", "catalog", "field", "agent"}),  # agent: an order page's quota leases
    "operations": frozenset({"core", "authority", "field", "ledger"}),
    "genealogy": frozenset({"core", "ledger", "royalties"}),
}


def _slice(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "service" else None


def test_service_is_cut_into_the_slices_of_the_table() -> None:
    service = PACKAGE / "service"
    loose = [p.name for p in service.glob("*.py") if p.name != "__init__.py"]
    slices = {s for m in _modules() if (s := _slice(m))}
    assert not loose, f"put these modules in a slice of service/: {loose}"
    assert slices == set(SLICES), f"slices and the table differ: {sorted(slices ^ set(SLICES))}"


def test_slices_import_only_the_siblings_their_row_names() -> None:
    bad = []
    for module, edges in _graph().items():
        here = _slice(module)
        if here is None:
            continue
        for target, line in edges.items():
            there = _slice(target)
            if there is None or there == here:
                continue
            if there not in SLICES[here]:
                bad.append(f"{module}:{line} imports {target} ({here} -> {there})")
    assert not bad, "imports against the slice table of docs/architecture.md:\n" + "\n".join(sorted(bad))


# Process state a module would hide from its owner: locks and weak maps at module level, writes to the
# environment. State belongs to the ``Instance`` or the runtime object that owns it (issue 24, item 4).
_HIDDEN_STATE_CALLS = {"Lock", "RLock", "WeakKeyDictionary", "WeakValueDictionary", "local"}
_SERVER_LAYERS = ("service", "store", "runtime", "api")


def test_no_hidden_process_state_in_the_server() -> None:
    bad = []
    for name, path in _modules().items():
        if _layer(name) not in _SERVER_LAYERS:
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
                func = node.value.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in _HIDDEN_STATE_CALLS:
                    bad.append(f"{name}:{node.lineno} keeps a module-level {called}")
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Attribute)
                    and target.value.attr == "environ"
                ):
                    bad.append(f"{name}:{node.lineno} writes os.environ")
    assert not bad, "state belongs to the instance or runtime that owns it:\n" + "\n".join(bad)
