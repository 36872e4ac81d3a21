"""A walk across the product, as its users walk it: one world where every feature has left its data (a Matter
product with an identity pool and its PAI, an IDevID product with key attestation, two sites, test records in
four formats, provisioned, refused and revoked units, a licence, a firmware release delivered, field checks, a
site agent's units synced home, a configuration change, an act of each kind under dual control), then every GET
route of /openapi.json called as an admin with the world's real ids, the dashboard's stats over each range it
offers, its pages, and the CLI's list and show commands with ``--json``.

Where one feature's data reaches another's typed answer is where a merge breaks without any feature's own test
failing: an answer the server cannot fit into its model is a 500. Here every answer must be below 500, every
2xx JSON answer must fit its schema in /openapi.json, and no command may end in a traceback.
"""

from __future__ import annotations

import base64
import json
import random
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx
import jsonschema
import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from typer.testing import CliRunner

from fabguard.api.server import ServerThread
from fabguard.cli.main import app
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import CaName, ProductId, Serial, SiteId
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.pki import profiles
from fabguard.service.access import tokens
from fabguard.service.agent import sync
from fabguard.service.agent.site_agent import sync_package
from fabguard.service.approvals import requests
from fabguard.service.authority.ca_acts import MatterPaiCreation
from fabguard.service.catalog import identity_pools, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import reenrolment
from tests.agent.conftest import Site, agent_fixture, make_site
from tests.api.test_role_matrix import PATH_VALUES
from tests.served import ServerProcess
from tests.service.ledger.test_witness import Site as WitnessSite
from tests.support import (
    REQUESTER,
    World,
    create_pg_database,
    drop_pg_database,
    new_instance,
    pg_admin_url,
    second_person_approves,
    tested_device,
)
from tests.tpm_support import TestCa, pem
from tests.walk_writes import checked, fits, recording, refused_answers

pytestmark = pytest.mark.slow  # one rich world per engine, ~300 answers and ~150 commands: about 70 s each

DATA = Path(__file__).resolve().parent / "data" / "testformats"
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="station" errors="0" failures="0" skipped="0" tests="2"
 timestamp="2026-12-07T09:40:00.000000+00:00" time="0.5" hostname="line-pc">
<properties><property name="serial" value="SN-JUNIT-0001"/><property name="station" value="pytest-station-1"/></properties>
<testcase classname="station_suite" name="test_supply_voltage" time="0.2"><properties>
<property name="vcc" value="3.31"/><property name="vcc.lower" value="3.2"/><property name="vcc.upper" value="3.4"/>
<property name="vcc.units" value="V"/></properties></testcase>
<testcase classname="station_suite" name="test_idle_current" time="0.3"><properties>
<property name="idle_current" value="11.5"/></properties></testcase>
</testsuite></testsuites>
"""


@dataclass
class Agent:
    """The site agent, serving (its own instance and server), with an admin token of its own, and its ids."""

    site: Site
    inst: Instance
    server: ServerThread
    token: str = ""
    values: dict[str, list[str]] = field(default_factory=dict)

    def admin(self) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.site.world.root_ca))
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.server.url, verify=verify, headers=headers, timeout=30)


@dataclass
class Walk:
    """The world after every feature has had its turn, and the real ids to fill the routes' paths with."""

    world: World
    approver: httpx.Client
    agent: Agent
    values: dict[str, list[str]] = field(default_factory=dict)
    orders: dict[str, str] = field(default_factory=dict)  # order id -> its creation time
    writes: list[httpx.Response] = field(default_factory=list)  # the world-building's answers to its writes


def _ok(answer: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert answer.status_code in (statuses or (200, 201)), (answer.request.url, answer.status_code, answer.text)
    body: dict[str, Any] = answer.json()
    return body


def _provisioned(fx: FixtureClient, order: str, serial: str, **kw: Any) -> SimulatedDevice:
    device = tested_device(fx, serial, seed=hash(serial) % 1000)
    device.certificate_pem = fx.provision(order, serial, device.csr_pem(), **kw).certificate_pem
    return device


def _approve(walk: Walk, answer: httpx.Response) -> str:
    """A request that waits for a second person (202), approved by the approver over the API: its id."""
    pending = _ok(answer, 202)
    approval_id = str((pending.get("pending_approval") or pending)["id"])
    _ok(walk.approver.post(f"/api/v1/approvals/{approval_id}/approve"), 200)
    return approval_id


def _matter_product(world: World, fx: FixtureClient) -> tuple[str, list[str]]:
    """A Matter bulb: its PAI (dual control), its pool (serials, MACs, Matter), an order, allocated and issued units."""
    inst = world.inst
    product_catalog.create_product(inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="test")
    asked = requests.request(inst, CaName("pai-bulb").value, MatterPaiCreation("bulb", 0xFFF1, 0x8000), by=REQUESTER)
    second_person_approves(inst, asked)
    pool = {
        "serials": {"prefix": "BULB-", "width": 5},
        "macs": {"prefix": "00-1B-63", "per_unit": 2, "first": 0, "count": 64},
        "matter": {"vendor_id": 0xFFF1, "product_id": 0x8000, "iterations": 1000},
    }
    identity_pools.set_pools(inst, ProductId("bulb"), pool_from_json(pool), actor="test")
    with world.admin() as admin:
        order = _ok(admin.post("/api/v1/orders", json={"product_id": "bulb", "site_id": "cm-a", "quota": 5}))["id"]
    serials = []
    for _ in range(2):
        serial = fx.allocate(order)["serial"]
        _provisioned(fx, order, serial)
        serials.append(serial)
    allocated_only = fx.allocate(order)["serial"]  # drawn, never provisioned
    return order, [*serials, allocated_only]


def _test_files(fx: FixtureClient) -> list[str]:
    """The station's own reports, as they are: ATML, CSV, JUnit XML (the OpenHTF ones come with each unit)."""
    stored = fx.upload_test_file((DATA / "atml" / "teststand_atml500_passed.xml").read_bytes(), "application/xml")
    stored += fx.upload_test_file((DATA / "atml" / "teststand_atml601_failed.xml").read_bytes(), "application/xml")
    stored += fx.upload_test_file((DATA / "csv" / "station_run.csv").read_bytes(), "text/csv")
    stored += fx.upload_test_file(JUNIT.encode(), "application/xml", format="junit")
    return [str(r["serial"]) for r in stored]


def _field_checks(world: World, devices: list[SimulatedDevice]) -> None:
    """Each device answers a challenge; a certificate the issuing CA signed off the log (a clone) too."""
    with world.admin() as admin:
        for device in devices:
            nonce = _ok(admin.post("/api/v1/field/challenge"))["nonce"]
            _ok(admin.post("/api/v1/field/verify", json=device.field_answer(nonce, source="store-berlin")))
        key = ec.generate_private_key(ec.SECP256R1())
        inst = world.inst
        rogue = profiles.idevid_certificate(
            inst.cas.issuer("issuing"), key.public_key(), Serial("SN-OFFLOG"), "Acme Devices", "sensor", inst.clock()
        )
        clone = SimulatedDevice("SN-OFFLOG", key, rogue.public_bytes(serialization.Encoding.PEM).decode())
        nonce = _ok(admin.post("/api/v1/field/challenge"))["nonce"]
        assert _ok(admin.post("/api/v1/field/verify", json=clone.field_answer(nonce)))["genuine"] is False


def _firmware(world: World, fx: FixtureClient, order: str, serial: str) -> str:
    with world.admin() as admin:
        image = base64.b64encode(b"\x7fFIRMWARE" * 512).decode()
        body = {"product_id": "sensor", "version": "1.0.0", "image": image, "notes": "First release."}
        release = _ok(admin.post("/api/v1/firmware/releases", json=body), 201)["id"]
        _ok(admin.post(f"/api/v1/firmware/releases/{release}/approve"))
        _ok(admin.post(f"/api/v1/firmware/releases/{release}/attach", json={"order_id": order}))
        withdrawn = _ok(admin.post("/api/v1/firmware/releases", json={**body, "version": "0.9.0"}), 201)["id"]
        _ok(admin.post(f"/api/v1/firmware/releases/{withdrawn}/withdraw", json={"reason": "superseded"}))
    assert fx.fetch_firmware(order, serial, release)
    return str(release)


def _acts_under_dual_control(walk: Walk, idle_order: str) -> list[str]:
    """One act of each kind a person asks for over the API, approved by a second; one left pending, one rejected."""
    done: list[str] = []
    with walk.world.admin() as admin:
        done.append(_approve(walk, admin.post("/api/v1/cas", json={"name": "issuing-b", "site_id": "cm-b"})))
        done.append(_approve(walk, admin.post("/api/v1/cas/issuing-b/revoke", json={"note": "never used"})))
        person = _ok(admin.post("/api/v1/people", json={"name": "Pat", "roles": ["engineer"]}), 201)["id"]
        done.append(_approve(walk, admin.post(f"/api/v1/people/{person}/grant", json={"role": "approver"})))
        _ok(admin.post(f"/api/v1/people/{person}/revoke", json={"role": "engineer"}), 200, 202)
        done.append(_approve(walk, admin.post("/api/v1/tokens", json={"person": person, "role": "approver"})))
        _ok(admin.post(f"/api/v1/orders/{idle_order}/state", json={"state": "suspended"}))
        done.append(_approve(walk, admin.post(f"/api/v1/orders/{idle_order}/state", json={"state": "active"})))
        _ok(admin.post("/api/v1/products/sensor/licence-signers/rotate"), 201)
        done.append(
            _approve(walk, admin.post("/api/v1/products/sensor/licence-signers/1/revoke", json={"note": "old"}))
        )
        pending = _ok(admin.post("/api/v1/cas", json={"name": "issuing-c"}), 202)
        rejected = _ok(admin.post("/api/v1/cas", json={"name": "issuing-d"}), 202)
        _ok(walk.approver.post(f"/api/v1/approvals/{rejected['id']}/reject"))
        change = _ok(admin.post(f"/api/v1/orders/{idle_order}/quota-changes", json={"quota": 20, "reason": "more"}))
        _ok(walk.approver.post(f"/api/v1/quota-changes/{change['id']}/approve"))
        walk.values["change_id"] = [str(change["id"])]
        walk.values["person_id"] = [person]
    return [*done, str(pending["id"]), str(rejected["id"])]


def _agent_units(world: World, home: Path) -> Agent:
    """A site agent made from an approved lease (which names this server), serving: two units issued offline
    and synced, one refused, then one more issued after the sync (not yet home)."""
    site = make_site(world, home)
    inst = Instance.open(site.home)
    agent = Agent(site, inst, ServerThread(inst).start())
    _, agent.token = tokens.create_token(inst, name="agent-admin", role="admin", actor="test")
    with agent_fixture(site, agent.server) as client:
        for serial in ("SN-AGENT-1", "SN-AGENT-2"):
            device = tested_device(client, serial)
            device.certificate_pem = client.provision(site.order_id, serial, device.csr_pem()).certificate_pem
        with pytest.raises(FabGuardClientError):
            client.provision(site.order_id, "SN-AGENT-X", SimulatedDevice("SN-AGENT-X").csr_pem())
        summary = sync.sync_lease(world.inst, sync_package(inst, site.home), actor="test")
        assert summary["units"] == 2, summary
        later = tested_device(client, "SN-AGENT-3")
        client.provision(site.order_id, "SN-AGENT-3", later.csr_pem())
    terms = site.lease["lease"]
    assert isinstance(terms, dict)
    with agent.admin() as admin:
        agent.values = {
            "serial": ["SN-AGENT-1", "SN-AGENT-3", "SN-AGENT-X"],
            "order_id": [site.order_id],
            "label": [site.order_id],
            "product_id": ["sensor"],
            "lease_id": [str(terms["lease_id"])],
            "ca": [str(x["name"]) for x in _ok(admin.get("/api/v1/cas"))],  # type: ignore[union-attr]
            "fixture_id": ["line-1"],
            "person_id": [str(x["id"]) for x in _ok(admin.get("/api/v1/people"))],  # type: ignore[union-attr]
            "token_id": [str(x["id"]) for x in _ok(admin.get("/api/v1/tokens"))],  # type: ignore[union-attr]
        }
    agent.values["name"] = agent.values["ca"]
    return agent


def _ocsp_requests(world: World, devices: list[SimulatedDevice]) -> list[str]:
    """OCSP requests (base64 DER, as a GET carries them) for these devices' certificates."""
    issuer = x509.load_pem_x509_certificate(world.inst.cas.certificate_pem("issuing").encode())
    out = []
    for device in devices:
        leaf = x509.load_pem_x509_certificate(str(device.certificate_pem).encode())
        asked = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
        out.append(base64.b64encode(asked.public_bytes(serialization.Encoding.DER)).decode())
    return out


def _sha256(device: SimulatedDevice) -> str:
    leaf = x509.load_pem_x509_certificate(str(device.certificate_pem).encode())
    return leaf.fingerprint(hashes.SHA256()).hex()


def _reenrolled(world: World, device: SimulatedDevice) -> None:
    """The unit's EST re-enrolment: a second certificate in its history."""
    leaf = x509.load_pem_x509_certificate(str(device.certificate_pem).encode())
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert reenrolment.reenroll_unit(world.inst, der, device.csr_pem().encode())


def _audits_and_upkeep(walk: Walk, order_b: str) -> None:
    """A witness's cosignature, the hand-off manifest, the CRA pack and a ledger export; a fixture, a person and a
    token revoked or suspended; an order's units revoked; an alert acknowledged; the issuing CA rotated."""
    with walk.world.admin() as admin:
        support = {"support_until": "2031-12-31", "vulnerability_contact": "mailto:psirt@example.com"}
        for product in ("sensor", "bulb", "lamp"):
            _ok(admin.put(f"/api/v1/products/{product}/compliance", json=support))
        _ok(admin.post("/api/v1/ledger/checkpoint"))
        witness_site = WitnessSite(walk.world.inst)
        _ok(admin.post("/api/v1/ledger/witnesses", json={"site_id": "cm-a", "verifier_key": witness_site.verifier}))
        size, line = witness_site.cosign(walk.world.inst)
        _ok(admin.post("/api/v1/ledger/cosignatures", json={"size": size, "signatures": line}))
        _ok(admin.post(f"/api/v1/handoff/manifest/{order_b}"))
        for archive in ("/api/v1/compliance/pack", "/api/v1/ledger/export"):  # archives, not JSON
            assert admin.post(archive).status_code == 200, archive
        _ok(admin.post("/api/v1/fixtures/fx-b1/revoke", json={"reason": "line closed"}))
        _ok(admin.post(f"/api/v1/orders/{order_b}/revoke-units", json={"note": "recall"}))
        sam = _ok(admin.post("/api/v1/people", json={"name": "Sam", "roles": ["operator"], "site_id": "cm-b"}))
        made = _ok(admin.post("/api/v1/tokens", json={"person": sam["id"], "role": "operator", "site_id": "cm-b"}))
        _ok(admin.post(f"/api/v1/tokens/{made['id']}/revoke"))
        _ok(admin.post(f"/api/v1/people/{sam['id']}/suspend", json={"reason": "left"}))
        alerts = _ok(admin.get("/api/v1/alerts", params={"state": "all"}))
        assert alerts, "the clone raised no alert"
        _ok(admin.post(f"/api/v1/alerts/{alerts[0]['id']}/ack", json={"note": "a clone, reported"}))  # type: ignore[index]
        change = _ok(admin.post(f"/api/v1/orders/{order_b}/quota-changes", json={"quota": 9, "reason": "less"}))
        _ok(walk.approver.post(f"/api/v1/quota-changes/{change['id']}/reject"))
        walk.values["approval_id"].append(
            _approve(walk, admin.post("/api/v1/cas/issuing/rotate", json={"new_name": "issuing-2"}))
        )


def _api_writes(world: World, fx: FixtureClient, order: str, devices: list[SimulatedDevice]) -> None:
    """Writes the rest of the world makes through the service, or not at all: over the API here, so their answers
    are walked too (a product, site and fixture added; an attestation root trusted, then removed; an order's own
    royalty rate; field checks and a station's records and units in batches; a browser session)."""
    with world.admin() as admin:
        _ok(admin.post("/api/v1/products", json={"id": "lamp", "name": "Lamp"}), 201)
        _ok(admin.post("/api/v1/sites", json={"id": "cm-c", "name": "CM C"}), 201)
        _ok(admin.post("/api/v1/fixtures", json={"id": "fx-c1", "site_id": "cm-c"}), 201)
        _ok(admin.post("/api/v1/fixtures/fx-c1/enrollment-token"), 201)
        spare = TestCa.make("Walk spare root")
        root = _ok(
            admin.post("/api/v1/products/sensor/attestation/roots", json={"kind": "se", "certificate": spare.pem})
        )
        assert admin.delete(f"/api/v1/products/sensor/attestation/roots/{root['sha256']}").status_code == 204
        _ok(admin.put(f"/api/v1/orders/{order}/royalty-rate", json={"amount": "0.30", "currency": "EUR"}))
        challenges = _ok(admin.post("/api/v1/field/challenges", json={"count": len(devices)}))["challenges"]
        answers = [d.field_answer(c["nonce"]) for d, c in zip(devices, challenges, strict=True)]
        _ok(admin.post("/api/v1/field/verify-batch", json={"answers": answers}))
        session = world.admin()
        del session.headers["Authorization"]
        session.headers["Origin"] = world.url
        with session:
            _ok(session.post("/api/v1/session", json={"token": world.admin_token}))
            _ok(session.delete("/api/v1/session"))
    batch = [SimulatedDevice(serial) for serial in ("SN-BATCH-1", "SN-BATCH-2")]
    fx.upload_test_records([openhtf_record(d.serial, "fx-a1", fail=False, rng=random.Random(3)) for d in batch])
    results = fx.provision_batch(order, [(d.serial, d.csr_pem()) for d in batch])
    assert all("certificate" in r for r in results), results


def _config_change(world: World) -> None:
    done = CliRunner().invoke(app, ["--home", str(world.inst.home), "config", "set", "public-url", world.url])
    assert done.exit_code == 0, done.output


def _record_writes(world: World, writes: list[httpx.Response]) -> Callable[[], None]:
    """Keep every answer to a write of the admin's, the approver's and the stations' clients while the world is
    built; what to call to stop."""
    admin, fixture = world.admin, world.fixture

    def recorded_admin() -> httpx.Client:
        return recording(admin(), writes)

    def recorded_fixture(fixture_id: str, site: str = "cm-a") -> FixtureClient:
        client = fixture(fixture_id, site)
        recording(client._http, writes)
        return client

    world.admin, world.fixture = recorded_admin, recorded_fixture  # type: ignore[method-assign]

    def stop() -> None:
        del world.admin, world.fixture  # the class's own again

    return stop


def _build(world: World, tmp: Path) -> Walk:
    writes: list[httpx.Response] = []
    stop_recording = _record_writes(world, writes)
    try:
        walk = _build_recorded(world, tmp)
    finally:
        stop_recording()
    walk.writes = writes
    return walk


def _build_recorded(world: World, tmp: Path) -> Walk:
    inst = world.inst
    _, approver_secret = tokens.create_token(inst, name="alex", role="approver", actor="test")
    approver = world.admin()
    approver.headers["Authorization"] = f"Bearer {approver_secret}"
    agent = _agent_units(world, tmp / "agent")  # first: its lease carries the fixture line-1
    walk = Walk(world, approver, agent)

    fx_a, fx_b = world.fixture("fx-a1", "cm-a"), world.fixture("fx-b1", "cm-b")
    order_a, order_b, idle = world.order(10), world.order(5, site="cm-b"), world.order(3)
    vendor = TestCa.make("Walk SE vendor root")
    with world.admin() as admin:
        _ok(admin.put("/api/v1/products/sensor/attestation", json={"policy": "optional"}))
        _ok(admin.post("/api/v1/products/sensor/attestation/roots", json={"kind": "se", "certificate": vendor.pem}))
        _ok(admin.put("/api/v1/products/sensor/royalty-rate", json={"amount": "0.25", "currency": "EUR"}))
    plain = _provisioned(fx_a, order_a, "SN-A1")
    revoked = _provisioned(fx_a, order_a, "SN-A2")
    licensed = _provisioned(fx_a, order_a, "SN-A3")
    se_device = tested_device(fx_a, "SN-A4")
    chain = [pem(vendor.issue("se-device", se_device.key.public_key())), vendor.pem]
    attested = fx_a.provision(order_a, "SN-A4", se_device.csr_pem(), attestation={"format": "se-chain", "chain": chain})
    se_device.certificate_pem = attested.certificate_pem
    at_b = _provisioned(fx_b, order_b, "SN-B1")
    failed = tested_device(fx_a, "SN-FAIL", passed=False)
    with pytest.raises(FabGuardClientError):  # a failed test: refused
        fx_a.provision(order_a, "SN-FAIL", failed.csr_pem())
    with pytest.raises(FabGuardClientError):  # never tested: refused
        fx_a.provision(order_a, "SN-UNTESTED", SimulatedDevice("SN-UNTESTED").csr_pem())
    from_files = _test_files(fx_a)
    fx_b.upload_test_record(openhtf_record("SN-B2", "fx-b1", fail=False, rng=random.Random(7)))  # tested only
    with world.admin() as admin:
        _ok(admin.post("/api/v1/units/SN-A2/revoke", json={"reason": "key_compromise", "note": "cloned"}))
    matter_order, matter_serials = _matter_product(world, fx_a)
    with world.admin() as admin:
        _ok(admin.post("/api/v1/units/SN-A3/licences", json={"features": ["radio.lte"]}), 201)
        _ok(admin.post("/api/v1/ledger/checkpoint"))
    release = _firmware(world, fx_a, order_a, "SN-A1")
    _field_checks(world, [plain, revoked, licensed, se_device, at_b])
    approvals = _acts_under_dual_control(walk, idle)
    _reenrolled(world, plain)
    _api_writes(world, fx_a, order_a, [plain, licensed])
    _config_change(world)
    walk.values["approval_id"] = approvals
    _audits_and_upkeep(walk, order_b)
    with world.admin() as admin:
        _ok(admin.post("/api/v1/ledger/checkpoint"))
        leases = [str(x["id"]) for x in _ok(admin.get("/api/v1/leases"))]  # type: ignore[union-attr]
        cas = [str(x["name"]) for x in _ok(admin.get("/api/v1/cas"))]  # type: ignore[union-attr]
        fixtures = [str(x["id"]) for x in _ok(admin.get("/api/v1/fixtures"))]  # type: ignore[union-attr]
        tokens_listed = [str(x["id"]) for x in _ok(admin.get("/api/v1/tokens"))]  # type: ignore[union-attr]
        orders = _ok(admin.get("/api/v1/orders"))
        walk.orders = {str(o["id"]): str(o["created_at"]) for o in orders}  # type: ignore[union-attr]
    serials = [
        "SN-A1",
        "SN-A2",
        "SN-A3",
        "SN-A4",
        "SN-B1",
        "SN-B2",
        "SN-FAIL",
        "SN-UNTESTED",
        "SN-AGENT-1",
        "SN-AGENT-3",
        "SN-BATCH-1",
    ]
    walk.values.update(
        matter=matter_serials,
        serial=[*serials, *matter_serials, *from_files],
        order_id=[order_a, order_b, idle, matter_order, agent.site.order_id],
        label=[order_a, matter_order],
        product_id=["sensor", "bulb"],
        fixture_id=fixtures,
        ca=cas,
        name=cas,
        release_id=[release],
        lease_id=leases,
        token_id=tokens_listed,
        ocsp_request=_ocsp_requests(world, [plain, revoked]),
        cert=[_sha256(plain), _sha256(revoked)],
    )
    with world.admin() as admin:
        people = _ok(admin.get("/api/v1/people"))
    walk.values.setdefault("person_id", []).extend(str(p["id"]) for p in people)  # type: ignore[union-attr]
    return walk


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def walk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    """The world on each database engine in turn (an answer's types come from the engine's rows)."""
    tmp = tmp_path_factory.mktemp("walk")
    if request.param == "postgres":
        if not pg_admin_url():
            pytest.skip("FABGUARD_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
        database_url: str | None = create_pg_database(migrated=True)
    else:
        database_url = None
    inst = new_instance(tmp / "home", database_url)
    world = World.start(inst, tmp)
    walk = None
    try:
        walk = _build(world, tmp)
        yield walk
    finally:
        if walk is not None:
            walk.agent.server.stop()
            walk.agent.inst.close()
        world.stop()
        inst.close()
        if database_url is not None:
            drop_pg_database(database_url)


# ---------------------------------------------------------------------------------------------- the API


def _spec(walk: Walk) -> dict[str, Any]:
    with walk.world.admin() as admin:
        return _ok(admin.get("/openapi.json"))


def _query_sets(path: str, values: dict[str, list[str]]) -> list[dict[str, str]]:
    """The queries a user sends to ``path`` (beyond none at all), with the world's ids."""
    orders, serials = values["order_id"], values["serial"]
    order = orders[0]
    sets: dict[str, list[dict[str, str]]] = {
        "/api/v1/ledger/proof/inclusion": [{"serial": s} for s in serials[:3]]
        + [{"index": "0"}, *({"cert": c} for c in values.get("cert", []))],
        "/api/v1/ledger/proof/consistency": [{"first": "1", "second": "5"}],
        "/api/v1/ledger/checkpoint": [{"format": "json"}, {"format": "text"}],
        "/api/v1/ledger/checkpoint/cosigned": [{"format": "text"}],
        "/api/v1/ledger/checkpoints": [{"limit": "100"}],
        "/api/v1/ledger/cosign-request": [{"old": "1"}],
        "/api/v1/reports/reconciliation": [{"order_id": o} for o in orders]
        + [{"site_id": "cm-b"}, {"order_id": order, "format": "csv"}, {"order_id": order, "format": "pdf"}],
        "/api/v1/royalties/statement": [
            {"product_id": "sensor"},
            {"order_id": order},
            {"site_id": "cm-a"},
            {"product_id": "sensor", "format": "csv"},
            {"product_id": "sensor", "format": "pdf"},
        ],
        "/api/v1/royalties/rates": [{"product_id": "sensor"}, {"order_id": order}],
        "/api/v1/approvals": [{"state": s} for s in ("pending", "approved", "rejected", "expired")],
        "/api/v1/events": [{"kind": k} for k in ("config.urls_changed", "unit.refused", "agent.unit.provisioned")]
        + [{"order_id": order}, {"limit": "1000"}, {"after": "5"}],
        "/api/v1/orders/{order_id}/units": [{"limit": "1"}, {"after": "SN-A1"}],
        "/api/v1/units": [{"order_id": o} for o in orders] + [{"product_id": "bulb"}],
        "/api/v1/units/search": [{"q": q} for q in ("SN-A", "BULB-", "SN-AGENT-1", "SN-CSV-0001", "00:1B:63")],
        "/api/v1/leases": [{"order_id": orders[-1]}],
        "/api/v1/firmware/releases": [{"product_id": "sensor"}],
        "/api/v1/field/checks": [{"limit": "1000"}],
        "/api/v1/alerts": [{"state": "all"}],
        "/api/v1/stats/overview": [{"site": "cm-a"}, {"site": "cm-b"}],
        "/api/v1/stats/stations": [{"site": "cm-a"}],
        "/api/v1/stats/distribution": [
            {"phase": "power", "name": "vcc"},
            {"phase": "power", "name": "vcc", "bins": "5"},
            {"phase": "Supply voltage", "name": "vcc", "fixture": "fx-a1"},
        ],
        "/api/v1/stats/failing-units": [{"phase": "power"}, {"phase": "power", "measurement": "vcc", "site": "cm-a"}],
        "/api/v1/stats/production": [{"order": order}, {"site": "cm-b"}, {"product": "bulb"}, {"fixture": "fx-a1"}],
    }
    return sets.get(path, [])


NOT_JSON = {"/api/v1/stream", "/metrics"}  # a stream that never ends; Prometheus text (checked on its own)


def _concrete(path: str, values: dict[str, list[str]]) -> list[str]:
    """``path`` with each real id the world has for its parameters (every one; the others left at their first);
    a parameter the world has no value for gets the role matrix's value for none."""
    names = re.findall(r"{(\w+)}", path)
    if not names:
        return [path]
    filled_in = {name: values.get(name) or [PATH_VALUES[name]] for name in names}
    out = []
    for name in names:
        for value in filled_in[name]:
            filled = path.replace("{" + name + "}", quote(value, safe=""))
            for other in names:
                if other != name:
                    filled = filled.replace("{" + other + "}", quote(filled_in[other][0], safe=""))
            out.append(filled)
    return out


def _checked(spec: dict[str, Any], template: str, answer: httpx.Response) -> str | None:
    """What is wrong with ``answer`` to ``GET template`` (None: nothing)."""
    where = f"GET {answer.request.url.raw_path.decode()}"
    if answer.status_code >= 500:
        return f"{where}: {answer.status_code} {answer.text[:300]}"
    kind = answer.headers.get("content-type", "").split(";")[0]
    if answer.status_code >= 300 or kind != "application/json":
        return None
    documented = spec["paths"][template]["get"]["responses"].get(str(answer.status_code), {})
    return fits(spec, documented, answer, f"{where} -> {answer.status_code}")


def _walk_routes(client: httpx.Client, values: dict[str, list[str]]) -> tuple[int, list[str]]:
    """Every GET route of the server's /openapi.json, with each id of ``values`` and each query a user sends:
    how many calls, and what was wrong."""
    spec = _ok(client.get("/openapi.json"))
    problems: list[str] = []
    called = 0
    for template, operations in spec["paths"].items():
        if "get" not in operations or template in NOT_JSON:
            continue
        for path in _concrete(template, values):
            for query in [{}, *_query_sets(template, values)]:
                called += 1
                try:
                    answer = client.get(path, params=query)
                except httpx.TransportError as lost:
                    problems.append(f"GET {path} {query}: no answer: {lost!r}")
                    continue
                problem = _checked(spec, template, answer)
                if problem:
                    problems.append(problem)
    metrics = client.get("/metrics")
    if metrics.status_code >= 500 or (metrics.status_code == 200 and "fabguard_" not in metrics.text):
        problems.append(f"GET /metrics: {metrics.status_code} {metrics.text[:300]}")
    return called, problems


def test_every_get_route_answers_below_500_and_fits_its_schema(walk: Walk) -> None:
    with walk.world.admin() as admin:
        called, problems = _walk_routes(admin, walk.values)
    assert not problems, "\n".join(problems)
    assert called > 200


@pytest.mark.parametrize(("role", "site"), [("operator", "cm-a"), ("operator", "cm-b"), ("auditor", None)])
def test_every_get_route_as_another_role_answers_below_500_and_fits_its_schema(
    walk: Walk, role: str, site: str | None
) -> None:
    """An operator sees their own site's part of each answer (genealogy, stats, the stream): other code paths."""
    _, secret = tokens.create_token(
        walk.world.inst, name=f"{role}-{site}", role=role, site_id=SiteId(site) if site else None, actor="test"
    )
    with walk.world.admin() as caller:
        caller.headers["Authorization"] = f"Bearer {secret}"
        called, problems = _walk_routes(caller, walk.values)
    assert not problems, "\n".join(problems)
    assert called > 200


def test_serve_with_two_workers_answers_the_same_walk(
    walk: Walk, server_processes: Callable[..., ServerProcess]
) -> None:
    """``fabguard serve --workers 2`` on the same instance (PostgreSQL: several processes): whichever worker
    answers, every route of the walk is below 500 and fits its schema, and ``/metrics`` answers."""
    if walk.world.inst.db.is_sqlite:
        pytest.skip("several workers need PostgreSQL")
    server = server_processes(walk.world.inst.home, workers=2)
    verify = ssl.create_default_context(cafile=str(walk.world.root_ca))
    headers = {"Authorization": f"Bearer {walk.world.admin_token}"}
    with httpx.Client(base_url=server.url, verify=verify, headers=headers, timeout=30) as admin:
        called, problems = _walk_routes(admin, walk.values)
    assert not problems, "\n".join(problems)
    assert called > 200 and len(server.worker_pids()) == 2


def test_every_get_route_of_the_site_agent_answers_below_500_and_fits_its_schema(walk: Walk) -> None:
    """The agent serves the same API over its own instance: its lease, its units (synced or not), its refusals."""
    with walk.agent.admin() as admin:
        called, problems = _walk_routes(admin, walk.agent.values)
    assert not problems, "\n".join(problems)
    assert called > 80


def test_the_world_is_as_rich_as_the_walk_says(walk: Walk) -> None:
    """The data the walk is about is there, in the answers it walks (else the walk proves little)."""
    with walk.world.admin() as admin:
        events = _ok(admin.get("/api/v1/events", params={"limit": "1000"}))
        approvals = _ok(admin.get("/api/v1/approvals", params={"state": "approved"}))
        genealogy = {s: _ok(admin.get(f"/api/v1/units/{s}/genealogy")) for s in ("SN-A1", "SN-A2", "SN-A3", "SN-A4")}
        genealogy["agent"] = _ok(admin.get("/api/v1/units/SN-AGENT-1/genealogy"))
        genealogy["matter"] = _ok(admin.get(f"/api/v1/units/{walk.values['matter'][0]}/genealogy"))
        alerts = _ok(admin.get("/api/v1/alerts", params={"state": "all"}))
    kinds = {e["kind"] for e in events}  # type: ignore[union-attr]
    expected = {"config.urls_changed", "unit.refused", "unit.revoked", "field.checked", "licence.issued"}
    assert expected <= kinds, expected - kinds
    assert any(k.startswith("agent.") for k in kinds), kinds
    acts = {a["kind"] for a in approvals}  # type: ignore[union-attr]
    assert len(acts) >= 8, acts
    assert genealogy["SN-A1"]["superseded_certificates"] and genealogy["SN-A1"]["firmware"]
    assert genealogy["SN-A2"]["units"][0]["certificate"]["revoked_at"] is not None
    assert genealogy["SN-A3"]["licences"] and genealogy["SN-A3"]["field_checks"]
    assert genealogy["SN-A4"]["units"][0]["attestation"] is not None
    assert genealogy["agent"]["units"][0]["made_by"]["kind"] == "site_agent"
    matter = genealogy["matter"]["identities"][0]
    assert matter["matter"] is not None and matter["mac_addresses"], matter
    assert any(a["kind"] == "field_clone" for a in alerts), alerts  # type: ignore[union-attr]
    # A unit back from the field is found by what it shows: the site agent's unit by its certificate's SHA-256,
    # the Matter unit by its MAC address, SN-A1 by the certificate its re-enrolment replaced.
    with walk.world.admin() as admin:
        for q, serial in (
            (genealogy["agent"]["units"][0]["certificate"]["sha256"].upper(), "SN-AGENT-1"),
            (matter["mac_addresses"][0], walk.values["matter"][0]),
            (genealogy["SN-A1"]["superseded_certificates"][0]["serial"], "SN-A1"),
        ):
            found = _ok(admin.get("/api/v1/units/search", params={"q": q}))
            assert found["serials"][:1] == [serial], (q, found)  # type: ignore[index]


def test_every_write_answer_of_the_world_building_fits_its_schema(walk: Walk) -> None:
    """Each POST, PUT and DELETE answer the world was built with (created, pending, approved, refused; the
    stations' uploads and units among them) fits what /openapi.json publishes for its route and status."""
    spec = _spec(walk)
    problems = [problem for answer in walk.writes if (problem := checked(spec, answer)) is not None]
    assert not problems, "\n".join(problems)
    routes = {(a.request.method, a.request.url.path) for a in walk.writes}
    assert len(walk.writes) > 60 and len(routes) > 40, (len(walk.writes), len(routes))
    assert any(a.status_code >= 400 for a in walk.writes)  # refusals among them


def test_every_write_route_refuses_a_bad_call_with_the_error_schema(walk: Walk) -> None:
    """Each write route, called with ids no row has or a body of the wrong type, is refused (nothing done)
    with an answer that fits the ``Error`` schema /openapi.json publishes for it."""
    spec = _spec(walk)
    with walk.world.admin() as admin:
        problems = refused_answers(admin, spec, walk.values)
    assert not problems, "\n".join(problems)


# The dashboard's ranges (web/static/core.js): the shift is the server's default window.
RANGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
STATS = ("overview", "production", "stations", "distribution", "failing-units")


def _windows(walk: Walk) -> list[dict[str, str]]:
    now = datetime.now(UTC)
    windows = [{}] + [{"since": (now - span).isoformat(), "until": now.isoformat()} for span in RANGES.values()]
    windows += [{"since": created, "until": now.isoformat()} for created in walk.orders.values()]  # the order's life
    windows.append({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"})  # custom, empty
    return windows


def test_the_dashboards_stats_answer_every_range_within_their_schema(walk: Walk) -> None:
    spec = _spec(walk)
    problems: list[str] = []
    with walk.world.admin() as admin:
        for window in _windows(walk):
            for name in STATS:
                for extra in [{}, *_query_sets(f"/api/v1/stats/{name}", walk.values)]:
                    problem = _checked(
                        spec, f"/api/v1/stats/{name}", admin.get(f"/api/v1/stats/{name}", params={**window, **extra})
                    )
                    if problem:
                        problems.append(problem)
    assert not problems, "\n".join(problems)


def test_the_dashboard_pages_and_their_files_load(walk: Walk) -> None:
    verify = ssl.create_default_context(cafile=str(walk.world.root_ca))
    with httpx.Client(base_url=walk.world.url, verify=verify) as anyone:
        page = anyone.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        files = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert files
        for path in [*files, "/docs"]:
            assert anyone.get(path).status_code == 200, path


def _first_overview(client: httpx.Client) -> dict[str, Any]:
    """The first ``overview`` event of the dashboard's stream (the page renders it as /stats/overview's answer)."""
    with client.stream("GET", "/api/v1/stream") as events:
        assert events.status_code == 200
        for line in events.iter_lines():
            if line.startswith("data: "):
                snapshot: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return snapshot
    raise AssertionError("the stream sent no overview")


def test_the_dashboard_signed_in_streams_an_overview_that_fits_the_overviews_schema(walk: Walk) -> None:
    """As the page does: sign in (a session cookie), read who it is, the stream's snapshot, and the same
    overview over the API; the snapshot is no answer of a route, so nothing but this checks its shape."""
    spec = _spec(walk)
    verify = ssl.create_default_context(cafile=str(walk.world.root_ca))
    with httpx.Client(base_url=walk.world.url, verify=verify, headers={"Origin": walk.world.url}) as page:
        _ok(page.post("/api/v1/session", json={"token": walk.world.admin_token}))
        who = page.get("/api/v1/session")
        assert _checked(spec, "/api/v1/session", who) is None and who.status_code == 200, who.text
        snapshot = _first_overview(page)
    schema = spec["paths"]["/api/v1/stats/overview"]["get"]["responses"]["200"]["content"]["application/json"]
    jsonschema.validate(snapshot, {**schema["schema"], "components": spec["components"]})
    assert snapshot["orders"], snapshot


def test_a_fixture_sees_itself(walk: Walk) -> None:
    spec = _spec(walk)
    fixture = walk.world.clients[0]
    assert fixture.whoami()["fixture_id"] == fixture.credentials.fixture_id
    verify = ssl.create_default_context(cafile=str(walk.world.root_ca))
    creds = fixture.credentials
    verify.load_cert_chain(str(creds.cert), str(creds.key))
    with httpx.Client(base_url=walk.world.url, verify=verify) as station:
        answer = station.get("/api/v1/fixture/whoami")
    assert answer.status_code == 200 and _checked(spec, "/api/v1/fixture/whoami", answer) is None, answer.text


# ---------------------------------------------------------------------------------------------- the CLI


def _json_commands() -> list[tuple[list[str], list[tuple[str, str | None]]]]:
    """Each command with ``--json`` that only reads (its words, its required parameters' names, each with its
    flag when it is an option, None when it is an argument)."""
    found: list[tuple[list[str], list[tuple[str, str | None]]]] = []

    def visit(command: Any, words: list[str]) -> None:
        for name, sub in (getattr(command, "commands", None) or {}).items():
            visit(sub, [*words, name])
        if getattr(command, "commands", None) or not any("--json" in getattr(p, "opts", []) for p in command.params):
            return
        if words[-1] not in {"create", "approve", "close", "finish"}:  # these write
            flags = [(p.name, p.opts[0] if isinstance(p, click.Option) else None) for p in command.params if p.required]
            found.append((words, flags))

    visit(typer.main.get_command(app), [])
    return found


# A command's required argument -> the world's ids it takes.
ARGUMENT_VALUES = {
    "person": "person_id",
    "order_id": "order_id",
    "approval_id": "approval_id",
    "serial": "serial",
    "product_id": "product_id",
    "product": "product_id",
    "query": "serial",  # unit find: a serial, as a returned unit's would be typed
}


def _invocations(values: dict[str, list[str]]) -> Iterator[list[str]]:
    """Each read-only ``--json`` command, once per real id of its one required argument."""
    for words, required in _json_commands():
        assert len(required) <= 1, (words, required)
        if not required:
            yield words
            continue
        ((name, flag),) = required
        for value in values.get(ARGUMENT_VALUES[name], []):
            yield [*words, flag, value] if flag else [*words, value]


def _run(where: list[str], args: list[str], env: dict[str, str], problems: list[str]) -> Any:
    """``fabguard WHERE ARGS --json``: its JSON, or None where it refused (a problem where it crashed)."""
    done = CliRunner().invoke(app, [*where, *args, "--json"], env={"COLUMNS": "200", **env})
    crashed = done.exception is not None and not isinstance(done.exception, SystemExit)
    if crashed or "Traceback" in done.output:
        problems.append(f"fabguard {' '.join([*where, *args])} --json: {done.exception!r}\n{done.output[-800:]}")
        return None
    try:
        return json.loads(done.stdout) if done.exit_code == 0 else None
    except ValueError:
        problems.append(f"fabguard {' '.join(args)} --json printed no JSON: {done.stdout[:300]}")
        return None


# Figures of "now": a stats command run twice a moment apart gives two.
NOW = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def _differences(local: Any, remote: Any, at: str = "") -> list[str]:
    """Where two printouts of the same data differ (timestamps of the moment each was made aside)."""
    if isinstance(local, dict) and isinstance(remote, dict):
        found = [f"{at}.{k}: only {'local' if k in local else 'remote'}" for k in local.keys() ^ remote.keys()]
        for k in local.keys() & remote.keys():
            found += _differences(local[k], remote[k], f"{at}.{k}")
        return found
    if isinstance(local, list) and isinstance(remote, list) and len(local) == len(remote):
        return [d for i, (a, b) in enumerate(zip(local, remote, strict=True)) for d in _differences(a, b, f"{at}[{i}]")]
    if local == remote or (
        isinstance(local, str) and isinstance(remote, str) and NOW.match(local) and NOW.match(remote)
    ):
        return []
    return [f"{at}: {local!r:.80} != {remote!r:.80}"]


def _cli_problems(
    home: Path, values: dict[str, list[str]], server: tuple[str, Path, str] | None
) -> tuple[int, list[str]]:
    """Each command on the instance directory and, given ``server`` (its URL, CA and a token), through the
    server's API: neither ends in a traceback, and both print the same data (ADR 0019)."""
    problems: list[str] = []
    ran = 0
    for args in _invocations(values):
        local = _run(["--home", str(home)], args, {}, problems)
        ran += 1
        if server is None or args[0] in {"doctor", "db", "config", "agent", "witness"}:  # on the directory only
            continue
        url, ca, token = server
        remote = _run(["--server", url, "--ca", str(ca)], args, {"FABGUARD_TOKEN": token}, problems)
        differs = _differences(local, remote) if local is not None and remote is not None else []
        if differs:
            problems.append(f"fabguard {' '.join(args)} --json differs, local and remote: {differs[:5]}")
    return ran, problems


def test_every_cli_list_and_show_with_json_ends_without_a_traceback(walk: Walk) -> None:
    server = (walk.world.url, walk.world.root_ca, walk.world.admin_token)
    ran, problems = _cli_problems(walk.world.inst.home, walk.values, server)
    assert not problems, "\n\n".join(problems)
    assert ran > 60


def test_the_site_agents_cli_list_and_show_with_json_end_without_a_traceback(walk: Walk) -> None:
    server = (walk.agent.server.url, walk.world.root_ca, walk.agent.token)
    ran, problems = _cli_problems(walk.agent.site.home, walk.agent.values, server)
    assert not problems, "\n\n".join(problems)
    assert ran > 25
