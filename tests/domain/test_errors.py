"""One error root, and one place where every code is declared.

Every exception class of FabGuard derives from ``FabGuardError`` (the fixture SDK's from its own root,
``FixtureError``, as the SDK must not import the server); every code the source raises is declared in
``fabguard.domain.errors`` with the status it is sent with; every declared code is in docs/api.md.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import fabguard
from fabguard.domain import errors
from fabguard.domain.errors import (
    ERROR_STATUS,
    FIRMWARE_REFUSAL_STATUS,
    REFUSAL_STATUS,
    FabGuardError,
    InvalidRequest,
    is_declared,
)
from fabguard.domain.values import CaName, FixtureId, OrderId, ProductId, SiteId
from fabguard.fixture.errors import FixtureError

SRC = Path(fabguard.__file__).parent
API_DOC = SRC.parents[1] / "docs" / "api.md"  # the HTTP API page (moved out of the README)

# Codes built at run time that no parameter of the enclosing function explains, as the source writes
# them, with the codes they can take.
SLUG_VALUES = (OrderId, ProductId, SiteId, FixtureId, CaName)
_RESOLVED_BY_HAND: dict[str, set[str]] = {
    # slug() is called by the value classes, each with its own ``what``
    "f\"invalid_{what.replace(' ', '_')}\"": {f"invalid_{c.what.replace(' ', '_')}" for c in SLUG_VALUES},
}


def _exception_classes() -> Iterator[type[BaseException]]:
    for info in pkgutil.walk_packages(fabguard.__path__, "fabguard."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                yield obj


# The station SDK (``fabguard.fixture`` is an alias of ``fabguard_station``, a distribution of its own).
SDK_MODULES = ("fabguard.fixture", "fabguard_station")
EXCEPTIONS = sorted(set(_exception_classes()), key=lambda c: f"{c.__module__}.{c.__qualname__}")
FABGUARD_ERRORS = {c.__name__: c for c in EXCEPTIONS if issubclass(c, FabGuardError)}


def test_every_exception_class_outside_the_sdk_derives_from_fabguard_error() -> None:
    server = [c for c in EXCEPTIONS if not c.__module__.startswith(SDK_MODULES)]
    assert len(server) >= 20
    strays = [f"{c.__module__}.{c.__qualname__}" for c in server if not issubclass(c, FabGuardError)]
    assert strays == []


def test_every_exception_class_of_the_fixture_sdk_derives_from_its_own_root() -> None:
    sdk = [c for c in EXCEPTIONS if c.__module__.startswith(SDK_MODULES)]
    assert len(sdk) >= 8
    strays = [f"{c.__module__}.{c.__qualname__}" for c in sdk if not issubclass(c, FixtureError)]
    assert strays == []
    assert all(not issubclass(c, FabGuardError) for c in sdk)


def test_errors_callers_catch_as_value_errors_are_still_value_errors() -> None:
    from fabguard.firmware.sbom import InvalidSbom
    from fabguard.ledger.checkpoint import CheckpointError
    from fabguard.ledger.merkle import ProofError
    from fabguard.pki.matter import AttestationProfileError

    for cls in (ProofError, CheckpointError, InvalidSbom, AttestationProfileError):
        assert issubclass(cls, ValueError) and issubclass(cls, FabGuardError), cls


def test_every_class_that_names_a_code_names_a_declared_one() -> None:
    # The root's own "error" is a placeholder no code raises (the scan below would find one that did).
    named = {c: c.__dict__["code"] for c in FABGUARD_ERRORS.values() if "code" in c.__dict__ and c is not FabGuardError}
    assert len(named) >= 15
    assert {c.__name__: code for c, code in named.items() if not is_declared(code)} == {}


def test_a_class_naming_an_undeclared_code_is_refused_when_it_is_made() -> None:
    with pytest.raises(TypeError, match="not declared"):
        type("Stray", (FabGuardError,), {"code": "no_such_code"})


def test_refusal_codes_and_other_codes_are_declared_apart() -> None:
    assert not set(ERROR_STATUS) & (set(REFUSAL_STATUS) | set(FIRMWARE_REFUSAL_STATUS))
    for table in (REFUSAL_STATUS, FIRMWARE_REFUSAL_STATUS, ERROR_STATUS):
        assert all(re.fullmatch(r"[a-z][a-zA-Z_]*[a-z]", code) for code in table), table
        assert all(400 <= status <= 599 for status in table.values()), table


# -- what the source raises ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raised:
    where: str
    code: str
    status: int | None  # None: not known from the source alone


def _callee(call: ast.Call) -> str:
    fn = call.func
    return fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""


def _parameters(tree: ast.Module) -> dict[int, tuple[str, list[str]]]:
    """For each f-string's position: the enclosing function's name and parameters."""
    out: dict[int, tuple[str, list[str]]] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)]
            for node in ast.walk(fn):
                if isinstance(node, ast.JoinedStr):
                    out[id(node)] = (fn.name, names)
    return out


def _string_arguments(trees: list[ast.Module], function: str, parameters: list[str]) -> Iterator[dict[str, str]]:
    """The string constants each call of ``function`` in the source binds to its parameters."""
    for tree in trees:
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and _callee(call) == function:
                bound = dict(zip(parameters, call.args, strict=False))
                bound.update({k.arg: k.value for k in call.keywords if k.arg})
                yield {k: v.value for k, v in bound.items() if isinstance(v, ast.Constant) and isinstance(v.value, str)}


def _resolve(template: ast.JoinedStr, scope: tuple[str, list[str]] | None, trees: list[ast.Module]) -> set[str]:
    text = ast.unparse(template)
    if text in _RESOLVED_BY_HAND:
        return _RESOLVED_BY_HAND[text]
    used = {n.id for n in ast.walk(template) if isinstance(n, ast.Name)}
    assert scope is not None and used <= set(scope[1]), f"cannot tell which codes {text} makes"
    code = compile(ast.Expression(template), "<code>", "eval")
    found = {
        eval(code, {}, values)  # our own source's f-string, over string constants
        for values in _string_arguments(trees, scope[0], scope[1])
        if used <= set(values)
    }
    assert found, f"no call gives {text} its values"
    return found


def _raised() -> list[Raised]:
    files = sorted(SRC.rglob("*.py"))
    trees = [ast.parse(path.read_text()) for path in files]
    out: list[Raised] = []
    for path, tree in zip(files, trees, strict=True):
        if "fixture" in path.relative_to(SRC).parts:
            continue  # the SDK's own codes are the client's, not the server's
        scopes = _parameters(tree)
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            where = f"{path.relative_to(SRC)}:{call.lineno}"
            name = _callee(call)
            keywords = {k.arg: k.value for k in call.keywords if k.arg}
            values: list[ast.expr] = []
            status: int | None = None
            if name in ("Refusal", "FirmwareRefusal") and call.args:
                values = [call.args[0]]
            elif name == "error_response" and len(call.args) >= 2:
                values = [call.args[1]]
                status = call.args[0].value if isinstance(call.args[0], ast.Constant) else None
            elif name in FABGUARD_ERRORS:
                cls = FABGUARD_ERRORS[name]
                values = [keywords.get("code", ast.Constant(cls.code))]
                given = keywords.get("status")
                status = given.value if isinstance(given, ast.Constant) else cls.status
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    out.append(Raised(where, value.value, status))
                elif isinstance(value, ast.JoinedStr):
                    out += [Raised(where, c, status) for c in _resolve(value, scopes.get(id(value)), trees)]
    return out


RAISED = _raised()


def test_the_scan_finds_the_codes_the_source_raises() -> None:
    codes = {r.code for r in RAISED}
    # One of each kind: a refusal, a firmware refusal, a literal code, a code built by slug(), the HTTP layer's.
    assert {"quota_exhausted", "release_not_approved", "batch_too_large", "invalid_order_id", "body_too_large"} <= codes
    assert len(codes) >= 80


def test_the_codes_of_the_slug_values_are_declared_with_their_status() -> None:
    for cls in SLUG_VALUES:
        invalid, missing = f"invalid_{cls.what.replace(' ', '_')}", cls.not_found
        assert ERROR_STATUS.get(invalid) == 422, cls
        assert (ERROR_STATUS | REFUSAL_STATUS).get(missing) == 404, cls


def test_every_code_the_source_raises_is_declared() -> None:
    assert sorted(f"{r.where}: {r.code}" for r in RAISED if not is_declared(r.code)) == []


def test_every_code_is_declared_with_the_status_it_is_sent_with() -> None:
    wrong = [
        f"{r.where}: {r.code} is sent with {r.status}, declared {ERROR_STATUS[r.code]}"
        for r in RAISED
        if r.code in ERROR_STATUS and r.status is not None and r.status != ERROR_STATUS[r.code]
    ]
    assert wrong == []


def test_the_codes_built_by_hand_above_are_still_built_so() -> None:
    trees = [ast.parse(path.read_text()) for path in SRC.rglob("*.py")]
    templates = {ast.unparse(n) for tree in trees for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)}
    assert set(_RESOLVED_BY_HAND) <= templates


def test_every_declared_code_is_listed_in_the_api_documentation() -> None:
    api = API_DOC.read_text()
    listed = set(re.findall(r"`([a-zA-Z_]+)`", api))
    declared = set(REFUSAL_STATUS) | set(FIRMWARE_REFUSAL_STATUS) | set(ERROR_STATUS)
    assert sorted(declared - listed) == []


def test_an_error_given_a_code_keeps_its_class_status_unless_told() -> None:
    error = InvalidRequest("too many", code="batch_too_large")
    assert (error.status, error.code, str(error)) == (422, "batch_too_large", "too many")
    assert error.to_dict() == {"error": {"code": "batch_too_large", "message": "too many"}}
    assert errors.Refusal("quota_exhausted", "none left").status == REFUSAL_STATUS["quota_exhausted"]
