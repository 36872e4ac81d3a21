"""Every rule about whether something may happen is a pure policy (issue 24, item 3): the layers that read
facts and write them (``service``, ``store``, ``runtime``) and the API construct no refusal of their own,
but for the few below, each listed with why it is not a rule. The pure layers (``domain``, ``pki``,
``ledger``, ``firmware``) are where refusals are made: a policy, or the check of an input's shape.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import fabguard

PACKAGE = Path(fabguard.__file__).parent
IMPURE_LAYERS = ("service", "store", "runtime", "api")

# (module, code): how many times, and why it is no rule.
ALLOWED: dict[tuple[str, str], tuple[int, str]] = {
    ("api/parsing.py", "order_not_found"): (1, "parsing: a string that is no order id names no order"),
    ("api/parsing.py", "csr_invalid"): (2, "parsing: a CSR field that is not a string, a subject unparsable"),
    ("api/deps.py", "rate_limited"): (1, "throttling a fixture's requests (domain/ratelimit.py decides the wait)"),
    ("service/catalog/fixtures.py", "unauthorized"): (1, "authentication: who calls, before any rule applies"),
    ("service/catalog/fixtures.py", "unknown_fixture"): (2, "authentication: no fixture holds this certificate"),
}


def _code(call: ast.Call) -> str:
    first = call.args[0] if call.args else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else "?"


def _refusals(tree: ast.AST) -> list[str]:
    """The code of each construction of a refusal class (``Refusal``, ``FirmwareRefusal``, …) in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name.endswith("Refusal"):
                found.append(_code(node))
    return found


def refusals_outside_the_pure_layers() -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for layer in IMPURE_LAYERS:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            module = path.relative_to(PACKAGE).as_posix()
            for code in _refusals(ast.parse(path.read_text())):
                counted[(module, code)] += 1
    return counted


def test_refusals_are_made_by_policies_not_by_services_or_routes() -> None:
    counted = refusals_outside_the_pure_layers()
    allowed = {site: n for site, (n, _) in ALLOWED.items()}
    extra = {f"{m}: {code} x{n}": n for (m, code), n in counted.items() if n > allowed.get((m, code), 0)}
    assert not extra, (
        "a rule belongs in a pure policy (domain/, or the pure module of its area), tested alone: "
        + ", ".join(sorted(extra))
    )
    gone = sorted(f"{m}: {code}" for (m, code), n in allowed.items() if counted[(m, code)] < n)
    assert not gone, f"shorten ALLOWED, these are gone: {', '.join(gone)}"


def test_the_counter_sees_a_refusal_made_in_a_service() -> None:
    tree = ast.parse('raise Refusal("unit_revoked", "no")\nraise errors.FirmwareRefusal("order_not_found", "no")')
    assert _refusals(tree) == ["unit_revoked", "order_not_found"]
