"""The API says what it accepts and a GET never writes: choices are enums in /openapi.json, a timestamp is
RFC 3339 with its offset or refused, a 405 names the methods the path has, and reading the ledger's
checkpoint stores nothing (taking one is a POST by an engineer or admin).

Requests go in process to the ASGI app without its lifespan, so no background worker signs a
checkpoint behind the test's back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from fabguard.api.app import create_app
from fabguard.domain.values import OrderId, ProductId, Role, SiteId
from fabguard.service.access import tokens
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.store.eventlog import event_count
from fabguard.store.models import CheckpointRow
from tests.support import new_instance

ORDER = "po-c"


@dataclass
class Api:
    inst: Instance
    app: Any
    bearer: dict[str, str]  # role name -> token

    def request(self, method: str, path: str, *, role: str | None = "admin", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.bearer[role]}"} if role else {}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://test", headers=headers) as http:
                return await http.request(method, path, **kw)

        return asyncio.run(go())

    def openapi(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.request("GET", "/openapi.json", role=None).json()
        return spec


def _setup(inst: Instance) -> Api:
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    orders.create_order(
        inst, order_id=OrderId(ORDER), product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=5, actor="test"
    )
    bearer = {
        role.value: tokens.create_token(inst, name=role.value, role=role, actor="test")[1]
        for role in (Role.ADMIN, Role.ENGINEER, Role.APPROVER, Role.AUDITOR)
    }
    return Api(inst, create_app(inst), bearer)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    inst = new_instance(Path(tmp_path_factory.mktemp("contract")) / "home")
    try:
        yield _setup(inst)
    finally:
        inst.close()


def _state(inst: Instance) -> tuple[int, int]:
    """The ledger's size and the number of checkpoints stored: what a refused or read-only call must not move."""
    with inst.db.read() as s:
        return event_count(s), int(s.execute(select(func.count()).select_from(CheckpointRow)).scalar_one())


def _refused(response: httpx.Response, status: int, code: str) -> str:
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text[:400]
    message: str = response.json()["error"]["message"]
    assert message.strip()
    return message


# ----------------------------------------------------------------------------- choices are enums


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's or property's schema without its ``null`` option or ``$ref``."""
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    assert len(options) == 1, schema
    found = options[0]
    if "$ref" in found:
        found = spec["components"]["schemas"][found["$ref"].rsplit("/", 1)[1]]
    return found


# What takes one of a fixed set of values, wherever it is: a query parameter or a JSON body's property.
CHOICE_NAMES = {"state", "format", "role", "policy", "kind"}
# ``kind`` of /api/v1/events filters by event kind: an open set (a new feature adds kinds), matched exactly.
FREE = {("get", "/api/v1/events", "kind")}


def _choices(spec: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] in CHOICE_NAMES:
                    found[(method, path, parameter["name"])] = _resolve(spec, parameter["schema"])
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                for name, prop in _resolve(spec, body).get("properties", {}).items():
                    if name in CHOICE_NAMES:
                        found[(method, path, name)] = _resolve(spec, prop)
    return found


def test_every_parameter_that_takes_one_of_a_fixed_set_of_values_is_an_enum_in_openapi(api: Api) -> None:
    choices = _choices(api.openapi())
    missing = sorted(
        f"{m.upper()} {p} {n}" for (m, p, n), s in choices.items() if "enum" not in s and (m, p, n) not in FREE
    )
    assert missing == [], "choices without an enum in /openapi.json"
    enums = {key: s["enum"] for key, s in choices.items() if "enum" in s}
    expected = {
        ("get", "/api/v1/approvals", "state"): ["pending", "approved", "rejected", "expired"],
        ("get", "/api/v1/alerts", "state"): ["open", "all"],
        ("post", "/api/v1/orders/{order_id}/state", "state"): ["active", "suspended", "closed"],
        ("get", "/api/v1/ledger/checkpoint", "format"): ["json", "note"],
        ("post", "/api/v1/ledger/checkpoint", "format"): ["json", "note"],
        ("get", "/api/v1/ledger/checkpoint/cosigned", "format"): ["json", "note"],
        ("get", "/api/v1/reports/reconciliation", "format"): ["json", "csv", "pdf"],
        ("get", "/api/v1/royalties/statement", "format"): ["json", "csv", "pdf"],
        ("post", "/api/v1/handoff/manifest/{order_id}", "format"): ["json", "csv"],
        ("post", "/api/v1/tokens", "role"): [r.value for r in Role],
        ("put", "/api/v1/products/{product_id}/attestation", "policy"): ["off", "optional", "required"],
        ("post", "/api/v1/products/{product_id}/attestation/roots", "kind"): ["tpm", "se"],
    }
    for key, values in expected.items():
        assert sorted(enums.get(key, [])) == sorted(values), key


@pytest.mark.parametrize(
    ("method", "path", "kw", "code", "accepted"),
    [
        ("GET", "/api/v1/ledger/checkpoint", {"params": {"format": "xml"}}, "invalid_format", "note"),
        ("POST", "/api/v1/ledger/checkpoint", {"params": {"format": "xml"}}, "invalid_format", "note"),
        ("GET", "/api/v1/ledger/checkpoint/cosigned", {"params": {"format": "xml"}}, "invalid_format", "note"),
        ("GET", "/api/v1/reports/reconciliation", {"params": {"format": "xml"}}, "invalid_format", "pdf"),
        ("GET", "/api/v1/royalties/statement", {"params": {"format": "xml"}}, "invalid_format", "pdf"),
        ("POST", f"/api/v1/handoff/manifest/{ORDER}", {"params": {"format": "pdf"}}, "invalid_format", "csv"),
        ("GET", "/api/v1/approvals", {"params": {"state": "lost"}}, "invalid_state", "expired"),
        ("GET", "/api/v1/alerts", {"params": {"state": "closed"}}, "invalid_state", "open"),
        ("POST", f"/api/v1/orders/{ORDER}/state", {"json": {"state": "paused"}}, "invalid_state", "suspended"),
        ("POST", "/api/v1/tokens", {"json": {"name": "x", "role": "root"}}, "invalid_request", "auditor"),
        ("PUT", "/api/v1/products/sensor/attestation", {"json": {"policy": "maybe"}}, "invalid_request", "optional"),
        (
            "POST",
            "/api/v1/products/sensor/attestation/roots",
            {"json": {"kind": "hsm", "certificate": "x"}},
            "invalid_request",
            "tpm",
        ),
    ],
)
def test_a_value_outside_the_set_is_refused_with_its_code_and_changes_nothing(
    api: Api, method: str, path: str, kw: dict[str, Any], code: str, accepted: str
) -> None:
    before = _state(api.inst)
    message = _refused(api.request(method, path, **kw), 422, code)
    assert _state(api.inst) == before
    assert accepted in message, message  # it says what is accepted


# ----------------------------------------------------------------------------- timestamps are RFC 3339

# Every timestamp the API takes: (method, path, where it goes, name, the rest of a valid body).
TIMESTAMPS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/reports/reconciliation", "query", "since", {}),
    ("GET", "/api/v1/reports/reconciliation", "query", "until", {}),
    ("GET", "/api/v1/royalties/statement", "query", "since", {}),
    ("GET", "/api/v1/royalties/statement", "query", "until", {}),
    ("GET", "/api/v1/stats/production", "query", "since", {}),
    ("GET", "/api/v1/stats/production", "query", "until", {}),
    ("POST", "/api/v1/orders", "body", "valid_from", {"product_id": "sensor", "site_id": "cm-a", "quota": 1}),
    ("POST", "/api/v1/orders", "body", "valid_until", {"product_id": "sensor", "site_id": "cm-a", "quota": 1}),
    ("POST", "/api/v1/units/SN-NONE/licences", "body", "not_after", {"features": ["radio.lte"]}),
    ("PUT", "/api/v1/products/sensor/royalty-rate", "body", "effective_from", {"amount": "1", "currency": "EUR"}),
    ("PUT", f"/api/v1/orders/{ORDER}/royalty-rate", "body", "effective_from", {"amount": "1", "currency": "EUR"}),
]
NOT_RFC3339 = {
    "fraction-of-a-second-since-1970": "0.5",
    "unix-seconds": "1900000000",
    "date-only": "2031-01-01",
    "no-offset": "2031-01-01T00:00:00",
    "no-seconds": "2031-01-01T00:00Z",
    "words": "next tuesday",
    "month-13": "2031-13-01T00:00:00Z",
    "offset-without-colon": "2031-01-01T00:00:00+0000",
    "week-date": "2031-W01-1T00:00:00Z",
}
IN_JSON_NOT_A_STRING = {"number": 0.5, "integer": 1900000000}


def _send(api: Api, target: tuple[str, str, str, str, dict[str, Any]], value: Any) -> httpx.Response:
    method, path, where, name, rest = target
    if where == "query":
        return api.request(method, path, params={name: value})
    return api.request(method, path, json={**rest, name: value})


@pytest.mark.parametrize("target", TIMESTAMPS, ids=lambda t: f"{t[0]} {t[1]} {t[3]}")
def test_a_timestamp_that_is_not_rfc3339_with_an_offset_is_refused_as_invalid_time(
    api: Api, target: tuple[str, str, str, str, dict[str, Any]]
) -> None:
    values: dict[str, Any] = dict(NOT_RFC3339)
    if target[2] == "body":
        values.update(IN_JSON_NOT_A_STRING)
    for case, value in values.items():
        before = _state(api.inst)
        response = _send(api, target, value)
        message = _refused(response, 422, "invalid_time")
        assert target[3] in message and "RFC 3339" in message, (case, message)
        assert _state(api.inst) == before, case  # nothing recorded, no checkpoint signed for a report


@pytest.mark.parametrize("target", TIMESTAMPS, ids=lambda t: f"{t[0]} {t[1]} {t[3]}")
def test_an_rfc3339_timestamp_passes_the_edge(api: Api, target: tuple[str, str, str, str, dict[str, Any]]) -> None:
    for value in ("2031-01-01T00:00:00Z", "2031-01-01t00:00:00.25z", "2031-01-01T05:30:00+05:30"):
        response = _send(api, target, value)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        # What comes after the edge may still refuse (a unit that does not exist, a window in the future...),
        # but never as a timestamp or request the edge could not read.
        assert code not in ("invalid_time", "invalid_request"), (value, response.text[:300])


@pytest.mark.parametrize(
    "value", [978307200, "978307200", "2031-01-01T00:00:00Z", "2031-1-1", "20310101", "2031-02-30"]
)
def test_a_day_is_an_rfc3339_full_date_or_invalid_time(api: Api, value: Any) -> None:
    path, contact = "/api/v1/products/sensor/compliance", "security@example.com"
    before = _state(api.inst)
    message = _refused(
        api.request("PUT", path, json={"support_until": value, "vulnerability_contact": contact}), 422, "invalid_time"
    )
    assert "support_until" in message and "YYYY-MM-DD" in message
    assert _state(api.inst) == before
    good = api.request("PUT", path, json={"support_until": "2031-01-01", "vulnerability_contact": contact})
    assert good.status_code == 200 and good.json()["support_until"] == "2031-01-01", good.text


def test_the_signed_report_refuses_until_as_a_number_instead_of_dating_it_1970(api: Api) -> None:
    merkle_log.make_checkpoint(api.inst)  # the report binds to a stored checkpoint covering its period
    good = api.request("GET", "/api/v1/reports/reconciliation", params={"until": "2031-01-01T00:00:00Z"})
    assert good.status_code == 200
    before = _state(api.inst)
    _refused(api.request("GET", "/api/v1/reports/reconciliation", params={"until": "0.5"}), 422, "invalid_time")
    assert _state(api.inst) == before


# ----------------------------------------------------------------------------- 405 names what is allowed


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/ledger/key", "GET"),
        ("DELETE", "/api/v1/ledger/checkpoint", "GET, POST"),
        ("PUT", "/api/v1/orders", "GET, POST"),
        ("DELETE", f"/api/v1/orders/{ORDER}", "GET"),
        ("GET", "/api/v1/units/provision", "POST"),
        ("GET", f"/api/v1/handoff/manifest/{ORDER}", "POST"),
        ("POST", "/api/v1/products/sensor/attestation", "GET, PUT"),
        ("DELETE", "/openapi.json", "GET, HEAD"),
        ("POST", "/", "GET"),
        ("POST", "/static/app.js", "GET, HEAD"),
    ],
)
def test_a_method_the_path_does_not_have_is_405_with_allow(api: Api, method: str, path: str, allow: str) -> None:
    before = _state(api.inst)
    response = api.request(method, path)
    _refused(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow
    assert _state(api.inst) == before


# ----------------------------------------------------------------------------- the checkpoint: GET reads, POST takes


def test_reading_the_checkpoint_stores_nothing_and_answers_the_newest_stored_one(
    tmp_path: Path, database_url: str | None
) -> None:
    inst = new_instance(tmp_path / "home", database_url)
    try:
        api = _setup(inst)
        taken = merkle_log.make_checkpoint(inst)
        product_catalog.create_site(inst, site_id=SiteId("cm-z"), name="CM Z", actor="test")  # the tree grows past it
        before = _state(inst)
        assert before[0] > taken.size
        for role in ("auditor", "engineer", "admin"):
            for fmt in ("json", "note"):
                response = api.request("GET", "/api/v1/ledger/checkpoint", role=role, params={"format": fmt})
                assert response.status_code == 200, response.text
                assert (response.json() if fmt == "json" else {"note": response.text})["note"] == taken.note
        assert _state(inst) == before
    finally:
        inst.close()


def test_taking_a_checkpoint_is_a_post_by_an_engineer_or_admin(tmp_path: Path, database_url: str | None) -> None:
    inst = new_instance(tmp_path / "home", database_url)
    try:
        api = _setup(inst)
        for role in ("auditor", "approver"):
            before = _state(inst)
            _refused(api.request("POST", "/api/v1/ledger/checkpoint", role=role), 403, "forbidden")
            assert _state(inst)[1] == before[1]
        size, stored = _state(inst)
        taken = api.request("POST", "/api/v1/ledger/checkpoint", role="engineer")
        assert taken.status_code == 200, taken.text
        assert taken.json()["size"] == size and _state(inst)[1] == stored + 1
        again = api.request("POST", "/api/v1/ledger/checkpoint", role="admin", params={"format": "note"})
        assert again.text == taken.json()["note"] and _state(inst)[1] == stored + 1  # once per tree size
        read = api.request("GET", "/api/v1/ledger/checkpoint", role="auditor")
        assert read.json() == taken.json()
    finally:
        inst.close()


def test_reading_the_checkpoint_before_any_is_signed_is_not_found(tmp_path: Path) -> None:
    inst = new_instance(tmp_path / "home")
    try:
        api = _setup(inst)
        if _state(inst)[1]:
            pytest.skip("this instance signs a checkpoint when it is made")
        before = _state(inst)
        message = _refused(api.request("GET", "/api/v1/ledger/checkpoint", role="auditor"), 404, "checkpoint_not_found")
        assert "POST /api/v1/ledger/checkpoint" in message
        assert _state(inst) == before
    finally:
        inst.close()
