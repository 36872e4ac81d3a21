"""A GET never writes: every GET route of the app, called by a role that may, leaves the database and the
instance's files as they were (no event, no checkpoint, no ledger node, no row, no key, no file).

The routes come from the OpenAPI document (plus the dashboard's page), the caller from docs/roles.md (the
least privileged role whose cell says ``yes``), the parameters from a small world with an order, two
provisioned units and a stored checkpoint, so the reads that matter answer 200 and run their real code.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fabguard.api.app import create_app
from fabguard.domain.values import Role, SiteId
from fabguard.service.access import tokens
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.firmware import sealing_keys
from fabguard.service.ledger import merkle_log
from fabguard.store import analytics_models
from fabguard.store.base import Base
from fabguard.store.models import CheckpointRow, Event, LedgerNode
from tests.api.test_request_contract import ORDER, _refused, _setup
from tests.api.test_role_matrix import PATH_VALUES, Caller, _openapi, call_raw, role_table
from tests.support import SoftHsm, World, new_hsm_instance, tested_device

# The least privileged caller first: a route an auditor may read is read as an auditor.
PREFERENCE = ("auditor", "operator", "approver", "engineer", "admin", "fixture", "none")
SERIALS = ("SN-READ-1", "SN-READ-2")
# Query parameters a route needs to do its real work (its required ones, or the scope of a document).
QUERIES = {
    "/api/v1/ledger/proof/inclusion": "index=1",
    "/api/v1/ledger/proof/consistency": "first=1",
    "/api/v1/reports/reconciliation": "order_id={order}",
    "/api/v1/royalties/statement": "order_id={order}",
    "/api/v1/orders/{order_id}/units": "",
    "/api/v1/units/search": "q=SN-READ",
    "/api/v1/stats/distribution": "phase=power_rails&name=vcc_3v3",
    "/api/v1/stats/failing-units": "phase=power_rails",
}
# The reads issue 23 named, which must answer 200 here (the others may answer 404 for a missing resource).
MUST_ANSWER = (
    "/api/v1/ledger/checkpoint",
    "/api/v1/ledger/cosign-request",
    "/api/v1/reports/reconciliation",
    "/api/v1/royalties/statement",
    "/api/v1/firmware/key",
    "/crl/{ca}.crl",
    "/api/v1/units/{serial}/licences",
)
# Files that change under a read without anything being written: the embedded database's own.
DATABASE_FILES = ("fabguard.db", "fabguard.db-wal", "fabguard.db-shm")
# The analytics projection: rollups and stored alerts, exactly the fold of events 1..cursor (ADR 0005).
ANALYTICS = {
    m.__tablename__
    for m in vars(analytics_models).values()
    if isinstance(m, type) and issubclass(m, Base) and m is not Base and m.__module__ == analytics_models.__name__
} - {"leases"}  # the worker leases' table lives there too: not derived
# The writes a read may make, and why each records nothing (README "A GET never writes"): derived data only,
# each exactly what the background workers write anyway, never an event, a checkpoint, a key or a decision.
DERIVED = {
    # The dashboard's reads let the analytics projector catch up (at most READ_CATCH_UP events) first.
    "/api/v1/alerts": ANALYTICS,
    "/api/v1/stats/overview": ANALYTICS,
    "/api/v1/stats/production": ANALYTICS,
    "/api/v1/stats/orders/{order_id}": ANALYTICS,
    "/api/v1/stats/stations": ANALYTICS,
    "/metrics": ANALYTICS,
    # A CRL that is missing or near its nextUpdate is signed again (revocation.current_crl): the same list
    # of revoked serials under a newer thisUpdate, as the maintenance worker signs it.
    "/crl/{ca}.crl": {"crls"},
}


@dataclass
class Reads:
    inst: Instance
    app: Any
    order: str
    callers: dict[str, Caller]


@pytest.fixture
def reads(any_instance: Instance, tmp_path: Path) -> Iterator[Reads]:
    """An order with two provisioned units, a stored checkpoint, and a caller of every kind; no server runs
    while the reads are made (its background workers write on their own)."""
    world = World.start(any_instance, tmp_path)
    try:
        order = world.order(quota=5)
        fx = world.fixture("fx-a")
        for serial in SERIALS:
            fx.provision(order, serial, tested_device(fx, serial).csr_pem())
        fixture_pem = fx.credentials.cert.read_text()
    finally:
        world.stop()
    inst = any_instance
    merkle_log.make_checkpoint(inst)
    callers: dict[str, Caller] = {"none": Caller(), "fixture": Caller(cert_pem=fixture_pem)}
    for role in ("admin", "engineer", "approver", "auditor"):
        callers[role] = Caller(bearer=tokens.create_token(inst, name=f"{role}-r", role=role, actor="test")[1])
    operator = tokens.create_token(inst, name="op-r", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="test")[1]
    callers["operator"] = Caller(bearer=operator)
    yield Reads(inst, create_app(inst), order, callers)


def _snapshot(inst: Instance) -> dict[str, str]:
    """A digest of every table's rows and of every file of the instance but the embedded database's."""
    digests: dict[str, str] = {}
    with inst.db.read() as s:
        for table in Base.metadata.sorted_tables:
            rows = sorted(repr(tuple(r)) for r in s.execute(select(table)).all())
            digests[f"table {table.name}"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    for path in sorted(inst.home.rglob("*")):
        if path.is_file() and path.name not in DATABASE_FILES:
            digests[f"file {path.relative_to(inst.home)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _counts(inst: Instance) -> tuple[int, int, int]:
    with inst.db.read() as s:
        events = s.execute(select(func.count()).select_from(Event)).scalar_one()
        checkpoints = s.execute(select(func.count()).select_from(CheckpointRow)).scalar_one()
        nodes = s.execute(select(func.count()).select_from(LedgerNode)).scalar_one()
        return int(events), int(checkpoints), int(nodes)


def _get_routes(app: Any) -> list[str]:
    paths = [p for p, ops in _openapi(app)["paths"].items() if "get" in ops]
    return [*sorted(paths), "/"]  # the dashboard's page is not in the document


def _caller(table: dict[tuple[str, str], dict[str, str]], path: str) -> str:
    if path == "/":
        return "none"
    cells = table[("GET", path)]
    return next(c for c in PREFERENCE if cells[c] == "yes")


def test_no_get_route_writes_anything(reads: Reads) -> None:
    table = role_table()
    values = {**PATH_VALUES, "order_id": reads.order, "label": reads.order, "serial": SERIALS[0], "ca": "issuing"}
    wrote: list[str] = []
    answers: dict[str, int] = {}

    async def walk() -> None:
        for n, path in enumerate(_get_routes(reads.app)):
            concrete = path
            for name, value in values.items():
                concrete = concrete.replace("{" + name + "}", value)
            query = QUERIES.get(path, "").format(order=reads.order)
            # The tree grows before each read, so a read that would sign "a checkpoint when the tree grew"
            # (or fold new events) meets new events every time.
            tokens.create_token(reads.inst, name=f"grow-{n}", role="auditor", actor="test")
            counts = _counts(reads.inst)
            before = _snapshot(reads.inst)
            status, _ = await call_raw(reads.app, "GET", concrete, reads.callers[_caller(table, path)], query)
            after = _snapshot(reads.inst)
            answers[path] = status
            allowed = {f"table {t}" for t in DERIVED.get(path, ())}
            changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            if set(changed) - allowed or _counts(reads.inst) != counts:
                wrote.append(f"GET {path} ({status}) changed {', '.join(changed)}")

    asyncio.run(walk())
    assert wrote == [], "\n".join(wrote)
    assert {p: answers[p] for p in MUST_ANSWER} == dict.fromkeys(MUST_ANSWER, 200)
    assert all(status < 500 for status in answers.values()), answers


# ----------------------------------------------------------------------------- signed documents bind to a stored checkpoint

DOCUMENTS = ("/api/v1/reports/reconciliation", "/api/v1/royalties/statement")


@pytest.mark.parametrize("path", DOCUMENTS)
def test_a_signed_document_binds_to_the_newest_stored_checkpoint_and_signs_none(
    any_instance: Instance, path: str
) -> None:
    api = _setup(any_instance)
    params = {"order_id": ORDER}
    before = _counts(any_instance)
    message = _refused(api.request("GET", path, role="auditor", params=params), 409, "checkpoint_required")
    assert "POST /api/v1/ledger/checkpoint" in message
    assert _counts(any_instance) == before

    stored = merkle_log.make_checkpoint(any_instance)
    signed_at = any_instance.clock()
    product_catalog.create_site(any_instance, site_id=SiteId("cm-later"), name="later", actor="test")  # grows
    before = _counts(any_instance)
    doc = api.request("GET", path, role="auditor", params=params)
    assert doc.status_code == 200, doc.text
    assert doc.json()["report"]["checkpoint"] == stored.to_dict()
    # A period that ended before the entries the checkpoint leaves out: covered.
    until = (signed_at - timedelta(seconds=1)).isoformat()
    assert api.request("GET", path, role="auditor", params={**params, "until": until}).status_code == 200
    # A period that reaches past them: the document would leave them out, so it is refused.
    later = (signed_at + timedelta(hours=1)).isoformat()
    message = _refused(
        api.request("GET", path, role="auditor", params={**params, "until": later}), 409, "checkpoint_required"
    )
    assert f"size {stored.size}" in message and "POST /api/v1/ledger/checkpoint" in message
    assert _counts(any_instance) == before
    # Once an engineer takes one, the same period is covered.
    assert api.request("POST", "/api/v1/ledger/checkpoint", role="engineer").status_code == 200
    covered = api.request("GET", path, role="auditor", params={**params, "until": later})
    assert covered.status_code == 200 and covered.json()["report"]["checkpoint"]["size"] == stored.size + 1


def test_a_cosign_request_hands_out_the_newest_stored_checkpoint_and_signs_none(any_instance: Instance) -> None:
    api = _setup(any_instance)
    api.bearer["operator"] = tokens.create_token(
        any_instance, name="op", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="test"
    )[1]
    before = _counts(any_instance)
    _refused(api.request("GET", "/api/v1/ledger/cosign-request", role="operator"), 404, "checkpoint_not_found")
    assert _counts(any_instance) == before
    stored = merkle_log.make_checkpoint(any_instance)
    product_catalog.create_site(any_instance, site_id=SiteId("cm-later"), name="later", actor="test")
    before = _counts(any_instance)
    answer = api.request("GET", "/api/v1/ledger/cosign-request", role="operator")
    assert answer.status_code == 200 and answer.text.endswith(stored.note)
    assert _counts(any_instance) == before


def test_init_makes_the_firmware_key_and_reading_it_never_does(instance: Instance) -> None:
    api = _setup(instance)
    key_file = instance.keys.path(sealing_keys.SIGNING_KEY)
    assert key_file.exists()  # made by init: devices pin it before the first release
    made = api.request("GET", "/api/v1/firmware/key", role=None).json()["public_key"]
    # An instance made before init made it: the read answers 404 and makes nothing.
    key_file.unlink()
    instance.keys.close()  # drop the key held in memory, as a fresh process would not have it
    message = _refused(api.request("GET", "/api/v1/firmware/key", role=None), 404, "firmware_key_not_found")
    assert "fabguard firmware key" in message and not key_file.exists()
    # The command line (the operator's act) makes it; then the read answers it.
    pem = sealing_keys.public_key_pem(instance, make_if_missing=True)
    assert pem != made and api.request("GET", "/api/v1/firmware/key", role=None).json()["public_key"] == pem


def test_an_hsm_instance_gets_its_firmware_key_in_the_token_at_init(softhsm: SoftHsm, tmp_path: Path) -> None:
    inst = new_hsm_instance(tmp_path / "home", softhsm)
    try:
        assert not inst.keys.path(sealing_keys.SIGNING_KEY).exists()  # in the token, not a file
        api = _setup(inst)
        pem = api.request("GET", "/api/v1/firmware/key", role=None).json()["public_key"]
        assert pem == sealing_keys.public_key_pem(inst, make_if_missing=True)  # the same key: nothing was made
    finally:
        inst.close()
