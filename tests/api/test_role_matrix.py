"""Every route of the OpenAPI document, as every kind of caller, answers as docs/roles.md says.

The table is parsed from the document, so the doc and the code cannot drift; a route missing from it
fails. Requests go in process to the ASGI app (one instance, minimal bodies), with a fixture's client
certificate put into the scope as our uvicorn protocol does (api/tls.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fabguard.api.app import create_app
from fabguard.domain.values import OrderId, ProductId, Role, SiteId
from fabguard.service.access import tokens
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from tests.support import enrolled_fixture_pem, new_instance

ROLES_DOC = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
ORDER = "po-a"
CALLERS = (
    "admin",
    "engineer",
    "approver",
    "auditor",
    "operator",
    "operator (other site)",
    "none",
    "revoked",
    "expired",
    "fixture",
    "fixture (other site)",
)
PATH_VALUES = {
    "order_id": ORDER,
    "label": ORDER,
    "change_id": "999999",
    "approval_id": "999999",
    "fixture_id": "fx-none",
    "serial": "SN-NONE",
    "name": "none",
    "ca": "none",
    "release_id": "none",
    "lease_id": "none",
    "alert_id": "none.0000000000000000",
    "product_id": "sensor",
    "sha256": "none",
    "person_id": "none",
    "ocsp_request": "none",
    "generation": "9",
    "token_id": "none",
}


def role_table() -> dict[tuple[str, str], dict[str, str]]:
    """docs/roles.md's table: (method, path) -> caller -> ``yes`` or ``<status> <code>``."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    header: list[str] | None = None
    for line in ROLES_DOC.read_text().splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "route":
            header = cells[1:]
            continue
        if set(cells[0]) <= {"-"}:
            continue
        assert header is not None and tuple(header) == CALLERS, header
        found = re.fullmatch(r"`([A-Z]+) (\S+)`", cells[0])
        assert found, f"a route cell must read `METHOD /path`: {cells[0]!r}"
        key = (found.group(1), found.group(2))
        assert key not in rows, f"{key} appears twice in docs/roles.md"
        assert len(cells) == len(CALLERS) + 1, key
        rows[key] = dict(zip(CALLERS, cells[1:], strict=True))
    return rows


@dataclass
class Caller:
    bearer: str | None = None
    cert_pem: str | None = None


@dataclass
class Matrix:
    inst: Instance
    app: Any
    callers: dict[str, Caller]


def _fixture_cert(inst: Instance, fixture_id: str, site: str) -> str:
    return enrolled_fixture_pem(inst, fixture_id, site)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    home = tmp_path_factory.mktemp("matrix") / "home"
    inst = new_instance(home)
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
    for site in ("cm-a", "cm-b"):
        product_catalog.create_site(inst, site_id=SiteId(site), name=site, actor="test")
    orders.create_order(
        inst, order_id=OrderId(ORDER), product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=5, actor="test"
    )
    callers: dict[str, Caller] = {"none": Caller()}
    for role in ("admin", "engineer", "approver", "auditor"):
        callers[role] = Caller(bearer=tokens.create_token(inst, name=role, role=role, actor="test")[1])
    for caller, site in (("operator", "cm-a"), ("operator (other site)", "cm-b")):
        callers[caller] = Caller(
            bearer=tokens.create_token(inst, name=caller, role=Role.OPERATOR, site_id=SiteId(site), actor="test")[1]
        )
    leaver, secret = tokens.create_token(inst, name="leaver", role="admin", actor="test")
    tokens.revoke_token(inst, leaver.id, actor="test")
    callers["revoked"] = Caller(bearer=secret)
    # Made three days ago (the instance's clock set back) for one day: expired now.
    now = inst.clock()
    then = Instance.open(home, clock=lambda: now - timedelta(days=3), migrate=False)
    try:
        _, expired = tokens.create_token(then, name="lapsed", role="admin", actor="test", expires_in=timedelta(days=1))
    finally:
        then.close()
    callers["expired"] = Caller(bearer=expired)
    callers["fixture"] = Caller(cert_pem=_fixture_cert(inst, "fx-a", "cm-a"))
    callers["fixture (other site)"] = Caller(cert_pem=_fixture_cert(inst, "fx-b", "cm-b"))
    yield Matrix(inst, create_app(inst), callers)
    inst.close()


def _openapi(app: Any) -> dict[str, Any]:
    while not hasattr(app, "openapi"):  # the body-size limit (and any other ASGI wrapper) around FastAPI
        app = app.app
    spec: dict[str, Any] = app.openapi()
    return spec


async def call(app: Any, method: str, path: str, caller: Caller, query: str = "") -> tuple[int, Any]:
    """One request straight into the ASGI app; the client disconnects once the request is sent, so a
    streaming answer ends at once."""
    status, raw = await call_raw(app, method, path, caller, query)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


async def call_raw(app: Any, method: str, path: str, caller: Caller, query: str = "") -> tuple[int, bytes]:
    """As ``call``, with ``query`` (already encoded) and the answer's bytes as they came."""
    query_bytes = query.encode()
    headers = [(b"host", b"testserver")]
    if caller.bearer and path == "/api/v1/stream":  # EventSource sends no headers: the token is a parameter
        query_bytes = b"token=" + caller.bearer.encode()
    elif caller.bearer:
        headers.append((b"authorization", b"Bearer " + caller.bearer.encode()))
    body = b"{}" if method == "POST" else b""
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query_bytes,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
    }
    if caller.cert_pem:
        scope["extensions"] = {"tls": {"client_cert_chain": [caller.cert_pem]}}
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def test_every_route_of_the_openapi_document_is_in_the_role_table(matrix: Matrix) -> None:
    table = role_table()
    routes = {(m.upper(), p) for p, ops in _openapi(matrix.app)["paths"].items() for m in ops}
    assert sorted(routes - set(table)) == [], "routes missing from docs/roles.md"
    assert sorted(set(table) - routes) == [], "docs/roles.md lists routes the API does not have"


def test_every_route_answers_every_caller_as_the_role_table_says(matrix: Matrix) -> None:
    table = role_table()

    async def run() -> list[str]:
        wrong = []
        for (method, path), expected in sorted(table.items()):
            for caller_name, cell in expected.items():
                status, answer = await call(matrix.app, method, _concrete(path), matrix.callers[caller_name])
                code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
                if cell == "yes":
                    ok = status not in (401, 403) and status < 500
                else:
                    want_status, want_code = cell.split()
                    ok = (status, code) == (int(want_status), want_code)
                if not ok:
                    wrong.append(f"{method} {path} as {caller_name}: {status} {code}, the table says {cell}")
        return wrong

    wrong = asyncio.run(run())
    assert wrong == [], "\n".join(wrong)


def test_an_operator_lists_only_its_own_sites_orders(matrix: Matrix) -> None:
    orders.create_order(
        matrix.inst,
        order_id=OrderId("po-b"),
        product_id=ProductId("sensor"),
        site_id=SiteId("cm-b"),
        quota=1,
        actor="t",
    )

    def listed(caller: str) -> set[str]:
        status, body = asyncio.run(call(matrix.app, "GET", "/api/v1/orders", matrix.callers[caller]))
        assert status == 200
        return {o["id"] for o in body}

    assert listed("auditor") >= {ORDER, "po-b"}
    assert listed("operator") == {ORDER}
    assert listed("operator (other site)") == {"po-b"}
    status, body = asyncio.run(call(matrix.app, "GET", "/api/v1/orders/po-b", matrix.callers["operator"]))
    absent_status, absent = asyncio.run(call(matrix.app, "GET", "/api/v1/orders/po-zz", matrix.callers["operator"]))
    # Another site's order and an order that does not exist look the same to an operator.
    assert (status, body["error"]["code"]) == (absent_status, absent["error"]["code"]) == (404, "order_not_found")
    assert body["error"]["message"] == "no order 'po-b'" and absent["error"]["message"] == "no order 'po-zz'"


async def narrow_role_mistakes(app: Any, caller: Caller, allowed: set[tuple[str, str]], role: str) -> list[str]:
    """Walk every route of the table as ``caller``, a token of a role with no column of its own (``field``,
    ``metrics``): only ``allowed`` and the public routes let it through; a fixture's route refuses it as it
    refuses every bearer token; every other route answers 403 ``forbidden``. The routes that did otherwise."""
    wrong = []
    for (method, path), cells in sorted(role_table().items()):
        status, answer = await call(app, method, _concrete(path), caller)
        code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
        if (method, path) in allowed or cells["none"] == "yes":
            ok = status not in (401, 403) and status < 500
        elif cells["admin"] != "yes":  # a fixture's route: every bearer token is refused alike
            ok = f"{status} {code}" == cells["admin"]
        else:
            ok = (status, code) == (403, "forbidden")
        if not ok:
            wrong.append(f"{method} {path} as a {role} token: {status} {code}")
    return wrong


def test_an_operator_sees_its_own_sites_dashboard_and_nothing_of_other_sites(matrix: Matrix) -> None:
    """The CM's own view: the overview, production stats and alerts an operator reads hold its site's
    orders and fixtures only, and asking for another site is answered as a site that does not exist."""
    orders.create_order(
        matrix.inst,
        order_id=OrderId("po-c"),
        product_id=ProductId("sensor"),
        site_id=SiteId("cm-b"),
        quota=1,
        actor="t",
    )

    def get(caller: str, path: str, query: str = "") -> tuple[int, Any]:
        return asyncio.run(call(matrix.app, "GET", path, matrix.callers[caller], query))

    status, all_sites = get("auditor", "/api/v1/stats/overview")
    assert status == 200 and {"po-a", "po-c"} <= {o["id"] for o in all_sites["orders"]}
    assert {"fx-a", "fx-b"} <= {f["id"] for f in all_sites["fixtures"]}
    for caller, site, order, fixture in (
        ("operator", "cm-a", "po-a", "fx-a"),
        ("operator (other site)", "cm-b", "po-c", "fx-b"),
    ):
        status, mine = get(caller, "/api/v1/stats/overview")
        assert status == 200, mine
        assert mine["site_id"] == site
        assert order in {o["id"] for o in mine["orders"]}
        assert {o["site_id"] for o in mine["orders"]} == {site}
        assert {f["id"] for f in mine["fixtures"]} == {fixture}
        assert mine["field_checks"] == []
        assert all(a["site_id"] == site for a in mine["alerts"])
        status, production = get(caller, "/api/v1/stats/production")
        assert status == 200 and production["scope"]["site_id"] == site
        status, alerts = get(caller, "/api/v1/alerts", "state=all")
        assert status == 200 and all(a["site_id"] == site for a in alerts)
    other = {"operator": "cm-b", "operator (other site)": "cm-a"}
    for caller, site in other.items():
        for path in ("/api/v1/stats/overview", "/api/v1/stats/production"):
            status, body = get(caller, path, f"site={site}")
            assert (status, body["error"]["code"]) == (404, "site_not_found"), (caller, path, body)
    status, body = get("operator", "/api/v1/stats/production", "order=po-c")
    assert (status, body["error"]["code"]) == (404, "order_not_found")
    # A reader may narrow the overview to one site.
    status, narrowed = get("engineer", "/api/v1/stats/overview", "site=cm-b")
    assert status == 200 and {o["site_id"] for o in narrowed["orders"]} == {"cm-b"}
