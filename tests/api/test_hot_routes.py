"""The lean hot path (``api.hot_routes``, ADR 0021): it is the route that serves a good provisioning request,
it answers every request exactly as FastAPI's route does (the same status, headers, bytes and events, for
the contract's good and bad requests), /openapi.json is byte for byte what it is without it, and a
remembered fixture is authenticated on the event loop on SQLite (no worker thread) but in a worker thread on
PostgreSQL (a round trip must not block the loop).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest

from fabguard.api import deps, hot_routes
from fabguard.api.app import create_app
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from tests.api.test_provision_contract import (
    BAD_BODIES,
    ORDER,
    PROVISION,
    World,
    build_world,
    last_seq,
    send,
    unit_body,
)
from tests.support import new_instance


def without_lean_routes(app: Any) -> Any:
    """``app`` (``create_app``'s) with the lean routes taken out: FastAPI's routes alone, as before them."""
    routes = app.app.app.router.routes
    routes[:] = [r for r in routes if not isinstance(r, hot_routes.LeanRoute)]
    return app


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    inst = new_instance(Path(tmp_path_factory.mktemp("hot-routes")) / "home")
    try:
        yield build_world(inst)
    finally:
        inst.close()


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(module, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_good_request_is_served_by_the_lean_route_and_a_bad_one_by_fastapi_s(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    solved = _counting(monkeypatch, fastapi.routing, "solve_dependencies")  # FastAPI's dependency layer
    lean = _counting(monkeypatch, hot_routes, "unit_answer")

    good = send(world.app, unit_body(world.tested.pop()), cert=world.cert)
    assert (good.status, len(lean), len(solved)) == (201, 1, 0)

    missing = send(world.app, b'{"order_id": "po-k"}', cert=world.cert)
    assert missing.error()[:2] == (422, "invalid_request")
    assert (len(lean), len(solved)) == (1, 1)  # handed on: FastAPI's route answered


def test_the_lean_route_is_first_and_documents_nothing(world: World) -> None:
    fastapi_app = world.app.app.app
    assert isinstance(fastapi_app.router.routes[0], hot_routes.LeanRoute)
    assert fastapi_app.router.routes[0].path == PROVISION
    assert not fastapi_app.router.routes[0].include_in_schema


def test_the_openapi_document_is_byte_for_byte_the_one_without_the_lean_route(world: World) -> None:
    with_lean = send(create_app(world.inst), b"", cert=None, method="GET", path="/openapi.json")
    without = send(without_lean_routes(create_app(world.inst)), b"", cert=None, method="GET", path="/openapi.json")

    assert with_lean.status == 200 and with_lean.body == without.body
    spec = json.loads(with_lean.body)
    operation = spec["paths"][PROVISION]["post"]
    assert operation["operationId"] == "provision_unit"
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProvisionIn"
    }


_VARYING = {"x-request-id"}


def _events(inst: Instance, after: int, upto: int) -> list[tuple[str, str | None, str | None, object]]:
    """The events in (``after``, ``upto``]: kind, code, fixture and detail."""
    return [
        (e["kind"], e["code"], e["fixture_id"], e["detail"])
        for e in events.list_events(inst, after=after, limit=1000)
        if e["seq"] <= upto
    ]


def _same(lean: Any, plain: Any) -> None:
    assert lean.status == plain.status, (lean.body[:200], plain.body[:200])
    assert {k: v for k, v in lean.headers.items() if k not in _VARYING} == {
        k: v for k, v in plain.headers.items() if k not in _VARYING
    }
    assert lean.body == plain.body


# Beyond the contract's table: bodies the JSON decoder itself refuses in other ways, and odd content types.
MORE_BODIES: dict[str, tuple[bytes, str | None]] = {
    "huge-integer": (b'{"order_id": "po-k", "serial": ' + b"9" * 5000 + b', "csr": "x"}', "application/json"),
    "deeply-nested": (b'{"order_id": "po-k", "serial": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
    "utf-16": ('{"order_id": "po-k", "serial": "SN-K-1", "csr": "x"}'.encode("utf-16"), "application/json"),
    "form": (b"order_id=po-k&serial=SN-K-1&csr=x", "application/x-www-form-urlencoded"),
    "upper-case-type": (b'{"order_id": "po-k", "serial": "SN-K-1", "csr": "x"}', "Application/JSON"),
    "attestation-nan": (
        b'{"order_id": "po-k", "serial": "SN-K-1", "csr": "x", "attestation": NaN}',
        "application/json",
    ),
}
ALL_BODIES = {name: (body, content_type) for name, (body, content_type, _, _) in BAD_BODIES.items()} | MORE_BODIES


@pytest.mark.parametrize("case", list(ALL_BODIES))
def test_every_bad_body_is_answered_as_fastapi_s_route_answers_it(world: World, case: str) -> None:
    body, content_type = ALL_BODIES[case]
    plain_app = without_lean_routes(create_app(world.inst))

    before = last_seq(world.inst)
    plain = send(plain_app, body, cert=world.cert, content_type=content_type)
    middle = last_seq(world.inst)
    lean = send(world.app, body, cert=world.cert, content_type=content_type)

    _same(lean, plain)
    assert _events(world.inst, middle, last_seq(world.inst)) == _events(world.inst, before, middle)


def test_good_requests_and_refused_callers_are_answered_as_fastapi_s_route_answers_them(world: World) -> None:
    plain_app = without_lean_routes(create_app(world.inst))
    serial = world.tested.pop()
    body = unit_body(serial)
    keyed = unit_body(world.tested.pop())
    first = send(world.app, body, cert=world.cert)
    first_keyed = send(world.app, keyed, cert=world.cert, headers={"Idempotency-Key": "k-hot-1"})
    assert (first.status, first_keyed.status) == (201, 201)

    cases: list[tuple[bytes, str | None, dict[str, str]]] = [
        (body, world.cert, {}),  # a resend: 200, the same certificate (deterministic, so comparable)
        (keyed, world.cert, {"Idempotency-Key": "k-hot-1"}),  # a keyed replay
        (body, world.cert, {"Idempotency-Key": "k-hot-1"}),  # the key with another body
        (body, world.cert, {"Idempotency-Key": "bad\x7fkey"}),
        (body, world.cert, {"Idempotency-Key": "k-hot-fresh-{app}"}),  # a key new to each app
        (body, None, {}),
        (body, world.stranger_cert, {}),
        (body, world.revoked_cert, {}),
        (unit_body(serial, order="po-nope"), world.cert, {}),
        (unit_body("SN-NEVER-TESTED"), world.cert, {}),
    ]
    for request_body, cert, headers in cases:
        before = last_seq(world.inst)
        plain = send(plain_app, request_body, cert=cert, headers={k: v.format(app="plain") for k, v in headers.items()})
        middle = last_seq(world.inst)
        lean = send(world.app, request_body, cert=cert, headers={k: v.format(app="lean") for k, v in headers.items()})
        _same(lean, plain)
        assert _events(world.inst, middle, last_seq(world.inst)) == _events(world.inst, before, middle)


def _committed(app: Any) -> Any:
    committer = app.app.app.state.committer
    committer.start()
    return committer


def test_a_remembered_fixture_is_authenticated_on_the_loop_on_sqlite(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(world.inst)
    committer = _committed(app)  # units decided by the writer, awaited: the request's only thread is the loop
    try:
        send(app, unit_body("SN-K-1", csr="x"), cert=world.cert)  # remembered from here on
        hops = _counting(monkeypatch, deps, "run_in_threadpool")
        refused = send(app, unit_body("SN-K-1", csr="x"), cert=world.cert)
        created = send(app, unit_body(world.tested.pop()), cert=world.cert)
        whoami = send(app, b"", cert=world.cert, method="GET", path="/api/v1/fixture/whoami")
        stranger = send(app, unit_body("SN-K-1"), cert=world.stranger_cert)
    finally:
        committer.stop()
    assert (refused.status, created.status, whoami.status, stranger.status) == (400, 201, 200, 401)
    assert len(hops) == 1  # only the stranger's refusal, which writes its event, left the loop


def test_on_postgresql_the_fixture_is_authenticated_in_a_worker_thread(
    any_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any_instance.db.is_sqlite:
        pytest.skip("the PostgreSQL half of the engine split")
    pg = build_world(any_instance)
    send(pg.app, unit_body("SN-K-1", csr="x"), cert=pg.cert)
    hops = _counting(monkeypatch, deps, "run_in_threadpool")

    answer = send(pg.app, unit_body("SN-K-1", csr="x"), cert=pg.cert)

    assert answer.error()[:2] == (400, "csr_invalid")
    assert len(hops) == 2  # the authentication, then the unit (no writer running in this bare app)


def test_a_csr_made_for_the_order_is_issued_through_the_lean_route(world: World) -> None:
    serial = world.tested.pop()
    device = SimulatedDevice(serial)
    body = json.dumps({"order_id": ORDER, "serial": serial, "csr": device.csr_pem()}).encode()

    answer = send(world.app, body, cert=world.cert)

    assert answer.status == 201 and answer.json()["serial"] == serial
