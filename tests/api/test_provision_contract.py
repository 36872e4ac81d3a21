"""The contract of ``POST /api/v1/units/provision``, request by request: for a set of good and bad requests,
the status, the error code and message (or the answer's shape), the events each one records and the
request's log line. Written before the lean hot path (``api.hot_routes``, session 11) and passing on the code
before it: the lean route must answer exactly what the FastAPI route answered.

Requests go in process to the whole ASGI app (request log, body limit, FastAPI) with the fixture's client
certificate in the scope, as ``api.tls`` puts it there; without the lifespan, so each unit is decided in a
worker thread rather than by the writer (the writer's path is the bench's and the server tests').
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabguard.api.app import create_app
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.ratelimit import RateLimiter
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from tests.support import enrolled_fixture_pem, new_instance

PROVISION = "/api/v1/units/provision"
ORDER = "po-k"
FIXTURE = "fx-k"
UNIT_KEYS = {"serial", "order_id", "certificate", "chain", "replayed"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> tuple[int, str, str]:
        error = self.json()["error"]
        assert set(self.json()) == {"error"} and set(error) == {"code", "message"}
        return self.status, error["code"], error["message"]


@dataclass
class World:
    inst: Instance
    app: Any
    cert: str  # the active fixture's certificate, PEM
    revoked_cert: str
    stranger_cert: str  # a certificate no fixture holds
    tested: list[str]  # serials with a passing test record, not yet provisioned


def send(
    app: Any,
    body: bytes,
    *,
    cert: str | None,
    method: str = "POST",
    path: str = PROVISION,
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json",
) -> Answer:
    """One request to ``app`` as uvicorn would hand it over (the client certificate in the TLS extension)."""
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode()))
    raw.append((b"content-length", str(len(body)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
        "extensions": {"tls": {"client_cert_chain": [cert] if cert else []}},
    }
    sent = False
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a client that sent its request waits for the answer
        return {"type": "http.disconnect"}

    async def send_(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    asyncio.run(app(scope, receive, send_))
    headers_out = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    return Answer(start["status"], headers_out, b"".join(chunks))


def stranger_certificate() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-a-fixture")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def build_world(inst: Instance) -> World:
    product_catalog.create_product(inst, product_id=ProductId("widget"), name="Widget", actor="test")
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    orders.create_order(
        inst, order_id=OrderId(ORDER), product_id=ProductId("widget"), site_id=SiteId("cm-a"), quota=50, actor="test"
    )
    cert = enrolled_fixture_pem(inst, FIXTURE)
    revoked_cert = enrolled_fixture_pem(inst, "fx-gone")
    fixtures.revoke_fixture(inst, FixtureId("fx-gone"), reason="stolen", actor="test")
    tested = [f"SN-K-{i}" for i in range(1, 9)]
    for serial in tested:
        testrecords.record_test(
            inst,
            FixtureFacts(FIXTURE, "cm-a", revoked=False),
            openhtf_record(serial, FIXTURE, fail=False, rng=random.Random(1)),
        )
    return World(inst, create_app(inst), cert, revoked_cert, stranger_certificate(), tested)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    inst = new_instance(Path(tmp_path_factory.mktemp("provision-contract")) / "home")
    try:
        yield build_world(inst)
    finally:
        inst.close()


def unit_body(serial: str, *, order: object = ORDER, **extra: Any) -> bytes:
    return json.dumps({"order_id": order, "serial": serial, "csr": SimulatedDevice(serial).csr_pem(), **extra}).encode()


def recorded(inst: Instance, after: int) -> list[tuple[str, str | None, str | None]]:
    """The events written since ``after``: kind, code and the fixture they name."""
    return [(e["kind"], e["code"], e["fixture_id"]) for e in events.list_events(inst, after=after)]


def last_seq(inst: Instance) -> int:
    page = events.list_events(inst, after=0, limit=1_000_000)
    return page[-1]["seq"] if page else 0


# --------------------------------------------------------------------------------------- good requests


def test_a_new_unit_is_201_and_its_resend_200_with_the_same_answer(world: World) -> None:
    serial = world.tested.pop()
    body = unit_body(serial)
    before = last_seq(world.inst)

    first = send(world.app, body, cert=world.cert)
    again = send(world.app, body, cert=world.cert)

    assert first.status == 201, first.body[:300]
    unit = first.json()
    assert set(unit) == UNIT_KEYS and unit["serial"] == serial and unit["order_id"] == ORDER
    assert unit["certificate"].startswith("-----BEGIN CERTIFICATE-----") and unit["replayed"] is False
    assert first.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in first.headers
    assert again.status == 200 and again.json() == {**unit, "replayed": True}  # the same certificate
    assert recorded(world.inst, before) == [("unit.provisioned", None, FIXTURE)]


def test_an_idempotency_key_replays_its_answer_and_refuses_another_body(world: World) -> None:
    serial, other = world.tested.pop(), world.tested.pop()
    body = unit_body(serial)
    key = {"Idempotency-Key": "k-contract-1"}

    first = send(world.app, body, cert=world.cert, headers=key)
    replay = send(world.app, body, cert=world.cert, headers=key)
    reused = send(world.app, unit_body(other), cert=world.cert, headers=key)
    malformed = send(world.app, unit_body(other), cert=world.cert, headers={"Idempotency-Key": "bad key\x7f"})
    empty = send(world.app, unit_body(other), cert=world.cert, headers={"Idempotency-Key": ""})

    assert first.status == 201 and set(first.json()) == UNIT_KEYS
    assert "idempotent-replayed" not in first.headers
    # The answer kept under the key, as it was (201), said to be a replay.
    assert (replay.status, replay.headers.get("idempotent-replayed"), replay.body) == (201, "true", first.body)
    assert reused.error() == (
        422,
        "idempotency_key_reused",
        "this Idempotency-Key was used for a different request; use a new key for a new request",
    )
    assert malformed.error()[:2] == (400, "idempotency_key_invalid")
    assert empty.error()[:2] == (400, "idempotency_key_invalid")


def test_the_same_body_spaced_or_ordered_otherwise_is_the_same_keyed_request(world: World) -> None:
    serial = world.tested.pop()
    csr = SimulatedDevice(serial).csr_pem()
    key = {"Idempotency-Key": "k-contract-2"}
    compact = json.dumps({"order_id": ORDER, "serial": serial, "csr": csr}, separators=(",", ":")).encode()
    reordered = json.dumps({"csr": csr, "serial": serial, "order_id": ORDER, "attestation": None}, indent=2).encode()

    first = send(world.app, compact, cert=world.cert, headers=key)
    second = send(world.app, reordered, cert=world.cert, headers=key)

    assert first.status == 201
    assert (second.status, second.headers.get("idempotent-replayed"), second.body) == (201, "true", first.body)


# ---------------------------------------------------------------------------------------- bad requests

_GOOD = b'"order_id": "po-k", "serial": "SN-K-1"'
_NOT_A_DICT = "body: Input should be a valid dictionary or object to extract fields from"
_UNPARSABLE_CSR = "the CSR could not be parsed as PEM, DER or base64 DER PKCS#10"
_SERIAL_RULE = "is not 1-64 characters of letters, digits and . : - starting with a letter or digit (no '/', spaces or other characters)"
_CSR_OF_ANOTHER = SimulatedDevice("SN-OTHER").csr_pem()
_UNIT_REFUSED = "unit.refused"
_UNTESTED = "no fixture of site cm-a has uploaded a test record for serial SN-OTHER"

# name: (body, content type) -> (status, code, message), the events it records (kind, code); from an active
# fixture. Taken from the FastAPI route before the lean one (session 11), and reviewed one by one.
BAD_BODIES: dict[str, tuple[bytes, str | None, tuple[int, str, str], list[tuple[str, str]]]] = {
    "truncated-json": (
        b'{"order_id": "po-k", ',
        "application/json",
        (400, "malformed_json", "the request body is not valid JSON"),
        [],
    ),
    "not-json": (b"hello", "application/json", (400, "malformed_json", "the request body is not valid JSON"), []),
    "trailing-garbage": (
        b"{" + _GOOD + b', "csr": "x"} xx',
        "application/json",
        (400, "malformed_json", "the request body is not valid JSON"),
        [],
    ),
    "invalid-utf8": (
        b'{"order_id": "po-k\xff", "serial": "SN-K-1", "csr": "x"}',
        "application/json",
        (400, "malformed_json", "There was an error parsing the body"),
        [],
    ),
    "empty": (b"", "application/json", (422, "invalid_request", "body: Field required"), []),
    "array": (b"[]", "application/json", (422, "invalid_request", _NOT_A_DICT), []),
    "null": (b"null", "application/json", (422, "invalid_request", _NOT_A_DICT), []),
    "string": (b'"po-k"', "application/json", (422, "invalid_request", _NOT_A_DICT), []),
    "missing-csr": (b"{" + _GOOD + b"}", "application/json", (422, "invalid_request", "csr: Field required"), []),
    "missing-all": (
        b"{}",
        "application/json",
        (422, "invalid_request", "order_id: Field required; serial: Field required; csr: Field required"),
        [],
    ),
    "extra-field": (
        b"{" + _GOOD + b', "csr": "x", "quota": 1000}',
        "application/json",
        (422, "invalid_request", "quota: Extra inputs are not permitted"),
        [],
    ),
    "text-plain": (b"{" + _GOOD + b', "csr": "x"}', "text/plain", (422, "invalid_request", _NOT_A_DICT), []),
    "no-content-type": (b"{" + _GOOD + b', "csr": "x"}', None, (422, "invalid_request", _NOT_A_DICT), []),
    "json-charset": (
        b"{" + _GOOD + b', "csr": "x"}',
        "application/json; charset=utf-8",
        (400, "csr_invalid", _UNPARSABLE_CSR),
        [(_UNIT_REFUSED, "csr_invalid")],
    ),
    "suffix-json": (
        b"{" + _GOOD + b', "csr": "x"}',
        "application/x+json",
        (400, "csr_invalid", _UNPARSABLE_CSR),
        [(_UNIT_REFUSED, "csr_invalid")],
    ),
    "nan-order": (
        b'{"order_id": NaN, "serial": "SN-K-1", "csr": "x"}',
        "application/json",
        (400, "csr_invalid", _UNPARSABLE_CSR),
        [(_UNIT_REFUSED, "csr_invalid")],
    ),
    "serial-number": (
        b'{"order_id": "po-k", "serial": 12, "csr": "x"}',
        "application/json",
        (400, "serial_invalid", f"serial '12' {_SERIAL_RULE}"),
        [(_UNIT_REFUSED, "serial_invalid")],
    ),
    "serial-empty": (
        b'{"order_id": "po-k", "serial": "", "csr": "x"}',
        "application/json",
        (400, "serial_invalid", f"serial '' {_SERIAL_RULE}"),
        [(_UNIT_REFUSED, "serial_invalid")],
    ),
    "csr-number": (
        b"{" + _GOOD + b', "csr": 5}',
        "application/json",
        (400, "csr_invalid", "the CSR must be a PEM or base64 DER string"),
        [(_UNIT_REFUSED, "csr_invalid")],
    ),
    "csr-garbage": (
        b"{" + _GOOD + b', "csr": "garbage"}',
        "application/json",
        (400, "csr_invalid", _UNPARSABLE_CSR),
        [(_UNIT_REFUSED, "csr_invalid")],
    ),
    "csr-oversize": (
        b"{" + _GOOD + b', "csr": "' + b"A" * 9000 + b'"}',
        "application/json",
        (400, "csr_invalid", "the CSR is 9000 bytes; at most 8192 are accepted"),
        [(_UNIT_REFUSED, "csr_invalid")],
    ),
    "csr-of-another-serial": (
        json.dumps({"order_id": ORDER, "serial": "SN-K-1", "csr": _CSR_OF_ANOTHER}).encode(),
        "application/json",
        (400, "serial_mismatch", "the CSR subject names serial 'SN-OTHER', the request names 'SN-K-1'"),
        [(_UNIT_REFUSED, "serial_mismatch")],
    ),
    "order-number": (
        json.dumps({"order_id": 7, "serial": "SN-OTHER", "csr": _CSR_OF_ANOTHER}).encode(),
        "application/json",
        (404, "order_not_found", "no order '7'"),
        [(_UNIT_REFUSED, "order_not_found")],
    ),
    "order-unknown": (
        json.dumps({"order_id": "po-nope", "serial": "SN-OTHER", "csr": _CSR_OF_ANOTHER}).encode(),
        "application/json",
        (404, "order_not_found", "no order 'po-nope'"),
        [(_UNIT_REFUSED, "order_not_found")],
    ),
    "order-malformed": (
        json.dumps({"order_id": "po k/..", "serial": "SN-OTHER", "csr": _CSR_OF_ANOTHER}).encode(),
        "application/json",
        (404, "order_not_found", "no order 'po k/..'"),
        [(_UNIT_REFUSED, "order_not_found")],
    ),
    "untested-serial": (
        json.dumps({"order_id": ORDER, "serial": "SN-OTHER", "csr": _CSR_OF_ANOTHER}).encode(),
        "application/json",
        (409, "test_missing", _UNTESTED),
        [(_UNIT_REFUSED, "test_missing")],
    ),
    "attestation-unreadable": (
        json.dumps({"order_id": ORDER, "serial": "SN-OTHER", "csr": _CSR_OF_ANOTHER, "attestation": 5}).encode(),
        "application/json",
        (409, "test_missing", _UNTESTED),
        [(_UNIT_REFUSED, "test_missing")],
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_bad_body_is_answered_its_code_and_consumes_nothing(world: World, case: str) -> None:
    body, content_type, expected, expected_events = BAD_BODIES[case]
    before = last_seq(world.inst)

    answer = send(world.app, body, cert=world.cert, content_type=content_type)

    assert answer.error() == expected
    assert [(kind, code) for kind, code, _ in recorded(world.inst, before)] == expected_events


# ------------------------------------------------------------------------------------------- callers


def test_callers_without_an_active_fixture_s_certificate_are_refused_and_recorded(world: World) -> None:
    body = unit_body("SN-K-1")
    cases = {
        "none": (None, (401, "unauthorized", "this call needs the fixture's TLS client certificate")),
        "stranger": (
            world.stranger_cert,
            (401, "unknown_fixture", "no enrolled fixture holds the certificate CN=not-a-fixture"),
        ),
        "revoked": (world.revoked_cert, (403, "fixture_revoked", "fixture fx-gone has been revoked")),
    }
    for name, (cert, expected) in cases.items():
        before = last_seq(world.inst)
        answer = send(world.app, body, cert=cert)
        assert answer.error() == expected, name
        assert [(k, c) for k, c, _ in recorded(world.inst, before)] == [("request.refused", expected[1])], name


def test_a_body_that_is_not_json_is_refused_before_the_caller_is_and_any_other_after(world: World) -> None:
    before = last_seq(world.inst)

    not_json = send(world.app, b"{", cert=None)
    missing = send(world.app, b"{}", cert=None)

    assert not_json.error() == (400, "malformed_json", "the request body is not valid JSON")
    assert missing.error()[:2] == (401, "unauthorized")
    assert [(k, c) for k, c, _ in recorded(world.inst, before)] == [("request.refused", "unauthorized")]


def test_a_fixture_over_its_rate_is_refused_and_recorded_once_a_second(world: World) -> None:
    app = create_app(world.inst)
    app.app.app.state.fixture_rate = RateLimiter(1, 1)
    body = unit_body("SN-K-1", csr="x")
    before = last_seq(world.inst)

    first, second, third = (send(app, body, cert=world.cert) for _ in range(3))

    assert first.error()[:2] == (400, "csr_invalid")
    assert second.error() == (429, "rate_limited", "fixture fx-k is over 1 requests a second; retry in 1 s")
    assert third.error()[:2] == (429, "rate_limited")
    assert [(k, c) for k, c, _ in recorded(world.inst, before)] == [
        (_UNIT_REFUSED, "csr_invalid"),
        ("request.refused", "rate_limited"),
    ]


def test_other_methods_are_405_naming_post_and_a_body_over_the_limit_413(world: World) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = send(world.app, b"", cert=world.cert, method=method)
        assert answer.error()[:2] == (405, "method_not_allowed"), method
        assert answer.headers["allow"] == "POST", method
    limit = world.inst.limits.max_body_bytes
    huge = send(world.app, b"{" + b" " * limit + b"}", cert=world.cert)
    assert huge.error() == (413, "body_too_large", f"the request body is over {limit} bytes")


def test_each_request_is_logged_and_counted_under_the_route_s_template(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    registry = world.app.app.app.state.dashboard.registry

    def counted(status: str) -> float:
        labels = {"method": "POST", "route": PROVISION, "status": status}
        return registry.get_sample_value("fabguard_http_requests_total", labels) or 0.0

    created, refused = counted("201"), counted("400")
    caplog.set_level(logging.INFO, logger="fabguard.access")

    send(world.app, unit_body(world.tested.pop()), cert=world.cert, headers={"X-Request-ID": "req-contract-1"})
    send(world.app, unit_body("SN-K-1", csr="x"), cert=world.cert, headers={"X-Request-ID": "req-contract-2"})

    lines = {r.request_id: r for r in caplog.records if r.name == "fabguard.access"}  # type: ignore[attr-defined]
    ok, bad = lines["req-contract-1"], lines["req-contract-2"]
    assert (ok.route, ok.status, ok.who, ok.code) == (PROVISION, 201, f"fixture:{FIXTURE}", None)  # type: ignore[attr-defined]
    assert (bad.route, bad.status, bad.who, bad.code) == (PROVISION, 400, f"fixture:{FIXTURE}", "csr_invalid")  # type: ignore[attr-defined]
    assert (counted("201"), counted("400")) == (created + 1, refused + 1)
