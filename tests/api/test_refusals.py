"""Every refusal code, provoked through the real API over TLS: right status, right body, nothing consumed, recorded.

Each test sets up the one fact that must stop the unit (everything else in order), sends the request
with a real client certificate (or deliberately without one) and checks four things: the HTTP status
is ``REFUSAL_STATUS[code]``; the body is exactly ``{"error": {"code": code, "message": ...}}``; no
order's ``used`` moved and no unit or certificate exists that did not before; a refusal event with
that code was written.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from fabguard.domain.errors import REFUSAL_STATUS
from fabguard.domain.identities import SerialFormat
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import CaName, FixtureId, OrderState, ProductId
from fabguard.fixture.client import FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.pki import profiles
from fabguard.service.authority.ca_acts import CaCreation, CaRevocation
from fabguard.service.catalog import fixtures, identity_pools, orders
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import event_count
from fabguard.store.identity_models import UnitIdentityRow
from fabguard.store.models import Unit
from tests.support import World, tested_device

PROVISION = "/api/v1/units/provision"

# Filled by @provokes: the meta test below insists every public refusal code has a test here.
_PROVOKED: set[str] = set()


def provokes(code: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    assert code in REFUSAL_STATUS, code

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        _PROVOKED.add(code)
        return fn

    return mark


@dataclass(frozen=True)
class Snapshot:
    """What a refusal must leave untouched (and where the event log stood before it)."""

    seq: int
    used: dict[str, int]
    units: int
    cert_serials: frozenset[str]


def snapshot(inst: Instance) -> Snapshot:
    with inst.db.read() as s:
        seq = event_count(s)
        units = int(s.execute(select(func.count()).select_from(Unit)).scalar_one())
        serials = frozenset(s.execute(select(Unit.cert_serial)).scalars())
    return Snapshot(seq, {o.id: o.used for o in orders.list_orders(inst)}, units, serials)


def mtls_client(fx: FixtureClient) -> httpx.Client:
    """A plain HTTPS client holding the fixture's certificate, so the raw response can be inspected."""
    ctx = ssl.create_default_context(cafile=str(fx.credentials.ca))
    ctx.load_cert_chain(str(fx.credentials.cert), str(fx.credentials.key))
    return httpx.Client(base_url=fx.credentials.server, verify=ctx, timeout=30)


def client_with_cert(
    world: World, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, where: Path
) -> httpx.Client:
    where.mkdir(parents=True, exist_ok=True)
    (where / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.create_default_context(cafile=str(world.root_ca))
    ctx.load_cert_chain(str(where / "cert.pem"), str(where / "key.pem"))
    return httpx.Client(base_url=world.url, verify=ctx, timeout=30)


@pytest.fixture
def http_of() -> Iterator[Callable[[FixtureClient], httpx.Client]]:
    made: list[httpx.Client] = []

    def make(fx: FixtureClient) -> httpx.Client:
        made.append(mtls_client(fx))
        return made[-1]

    yield make
    for c in made:
        c.close()


def provision_body(order_id: Any, serial: Any, csr: Any) -> dict[str, Any]:
    return {"order_id": order_id, "serial": serial, "csr": csr}


def assert_refused(
    inst: Instance,
    response: httpx.Response,
    code: str,
    before: Snapshot,
    *,
    order_id: str | None = None,
    fixture_id: str | None = None,
) -> dict[str, Any]:
    """The four promises of a refusal; returns the refusal event for further checks."""
    assert response.status_code == REFUSAL_STATUS[code], response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert isinstance(message, str) and message.strip(), body

    after = snapshot(inst)
    assert after.used == before.used, "a refusal consumed quota"
    assert after.units == before.units and after.cert_serials == before.cert_serials, "a refusal made a unit"

    new_events = events.list_events(inst, after=before.seq, limit=1000)
    assert not [e for e in new_events if e["kind"] == "unit.provisioned"]
    refusals = [e for e in new_events if e["code"] == code and e["kind"].endswith(".refused")]
    assert len(refusals) == 1, new_events
    event = refusals[0]
    assert event["detail"]["message"] == message
    if order_id is not None:
        assert event["order_id"] == order_id
    if fixture_id is not None:
        assert event["fixture_id"] == fixture_id
    return event


def csr_for(serial: str, key: Any, algorithm: hashes.HashAlgorithm | None = None) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]))
        .sign(key, algorithm if algorithm is not None else hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def csr_without_proof_of_possession(serial: str) -> str:
    """A CSR carrying one device's public key but signed by another key: its signature cannot verify."""
    signer, victim = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    der = x509.load_pem_x509_csr(csr_for(serial, signer).encode()).public_bytes(serialization.Encoding.DER)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    signer_spki = signer.public_key().public_bytes(serialization.Encoding.DER, spki)
    victim_spki = victim.public_key().public_bytes(serialization.Encoding.DER, spki)
    assert der.count(signer_spki) == 1 and len(signer_spki) == len(victim_spki)
    forged = x509.load_der_x509_csr(der.replace(signer_spki, victim_spki))
    assert forged.public_key() == victim.public_key() and not forged.is_signature_valid
    return forged.public_bytes(serialization.Encoding.PEM).decode()


# Authentication: who is asking


@provokes("unauthorized")
def test_provision_without_a_client_certificate_is_unauthorized(world: World) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    before = snapshot(world.inst)

    with httpx.Client(
        base_url=world.url, verify=ssl.create_default_context(cafile=str(world.root_ca)), timeout=30
    ) as anonymous:
        response = anonymous.post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    event = assert_refused(world.inst, response, "unauthorized", before)
    assert event["kind"] == "request.refused" and event["detail"]["route"] == PROVISION


@provokes("unknown_fixture")
def test_station_signed_certificate_that_was_never_enrolled_is_an_unknown_fixture(world: World) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    # A genuine station-CA certificate naming the enrolled fixture, but with a key FabGuard never saw
    # at enrolment: identity is the issued certificate itself, not the name inside it.
    key = ec.generate_private_key(ec.SECP256R1())
    cert = profiles.fixture_certificate(
        world.inst.cas.issuer("station"), key.public_key(), "Acme Devices", "fx-1", "cm-a", world.inst.clock()
    )
    before = snapshot(world.inst)

    with client_with_cert(world, cert, key, world.tmp / "ghost") as ghost:
        response = ghost.post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    event = assert_refused(world.inst, response, "unknown_fixture", before)
    assert event["kind"] == "request.refused" and event["fixture_id"] is None


@provokes("fixture_revoked")
def test_revoked_fixture_is_refused_even_with_its_own_valid_certificate(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    fixtures.revoke_fixture(world.inst, FixtureId("fx-1"), reason="station stolen", actor="test")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "fixture_revoked", before, fixture_id="fx-1")


# The order: where, whether, when, how many


@provokes("wrong_site")
def test_fixture_of_another_site_cannot_use_the_order(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5, site="cm-a")
    fx_b = world.fixture("fx-b", site="cm-b")
    device = tested_device(fx_b, "SN0001")
    before = snapshot(world.inst)

    response = http_of(fx_b).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    event = assert_refused(world.inst, response, "wrong_site", before, order_id=order, fixture_id="fx-b")
    assert event["kind"] == "unit.refused" and event["serial"] == "SN0001"
    assert orders.get_order(world.inst, order).refused == {"wrong_site": 1}


@provokes("order_not_found")
def test_unknown_order_is_not_found(world: World, http_of: Callable[[FixtureClient], httpx.Client]) -> None:
    world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body("po-nonexistent", "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "order_not_found", before, order_id="po-nonexistent", fixture_id="fx-1")


@provokes("order_inactive")
@pytest.mark.parametrize("state", ["suspended", "closed"])
def test_order_that_is_not_active_is_refused(
    world: World, http_of: Callable[[FixtureClient], httpx.Client], state: str
) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    orders.set_order_state(world.inst, order, OrderState(state), actor="test")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "order_inactive", before, order_id=order, fixture_id="fx-1")


@provokes("order_expired")
def test_order_past_its_validity_window_is_expired(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    now = world.inst.clock()
    order = world.order(quota=5, valid_from=now - timedelta(days=30), valid_until=now - timedelta(seconds=1))
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "order_expired", before, order_id=order, fixture_id="fx-1")


@provokes("order_not_yet_valid")
def test_order_before_its_validity_window_is_not_yet_valid(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    now = world.inst.clock()
    order = world.order(quota=5, valid_from=now + timedelta(days=1), valid_until=now + timedelta(days=30))
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "order_not_yet_valid", before, order_id=order, fixture_id="fx-1")


@provokes("quota_exhausted")
def test_unit_beyond_the_quota_is_refused_and_used_stays_at_the_quota(
    any_world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = any_world.order(quota=1)
    fx = any_world.fixture("fx-1")
    fx.provision(order, "SN0001", tested_device(fx, "SN0001").csr_pem())
    device = tested_device(fx, "SN0002")
    before = snapshot(any_world.inst)
    assert before.used[order] == 1

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0002", device.csr_pem()))

    assert_refused(any_world.inst, response, "quota_exhausted", before, order_id=order, fixture_id="fx-1")
    assert orders.get_order(any_world.inst, order).remaining == 0


# The CSR and the serial


@provokes("csr_invalid")
def test_csr_whose_signature_does_not_verify_is_invalid(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    tested_device(fx, "SN0001")
    before = snapshot(world.inst)

    response = http_of(fx).post(
        PROVISION, json=provision_body(order, "SN0001", csr_without_proof_of_possession("SN0001"))
    )

    assert_refused(world.inst, response, "csr_invalid", before, order_id=order, fixture_id="fx-1")


@provokes("key_type_not_allowed")
def test_key_type_outside_the_product_profile_is_not_allowed(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5)  # product "sensor" allows ec-p256 only
    fx = world.fixture("fx-1")
    tested_device(fx, "SN0001")
    p384_csr = csr_for("SN0001", ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", p384_csr))

    assert_refused(world.inst, response, "key_type_not_allowed", before, order_id=order, fixture_id="fx-1")


@provokes("serial_invalid")
def test_malformed_serial_is_invalid(world: World, http_of: Callable[[FixtureClient], httpx.Client]) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    tested_device(fx, "SN0001")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN 0001!", SimulatedDevice("SN0001").csr_pem()))

    event = assert_refused(world.inst, response, "serial_invalid", before, order_id=order, fixture_id="fx-1")
    assert event["serial"] == "SN 0001!"


@provokes("serial_mismatch")
def test_csr_naming_another_serial_is_a_mismatch(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    tested_device(fx, "SN0001")
    tested_device(fx, "SN0002")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", SimulatedDevice("SN0002").csr_pem()))

    assert_refused(world.inst, response, "serial_mismatch", before, order_id=order, fixture_id="fx-1")


# The unit: tested, and its key new


@provokes("test_missing")
def test_unit_without_a_test_record_is_refused(world: World, http_of: Callable[[FixtureClient], httpx.Client]) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    tested_device(fx, "SN0002")  # another unit's record does not count
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", SimulatedDevice("SN0001").csr_pem()))

    event = assert_refused(world.inst, response, "test_missing", before, order_id=order, fixture_id="fx-1")
    assert event["serial"] == "SN0001"


@provokes("test_failed")
def test_unit_whose_latest_test_failed_is_refused(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    tested_device(fx, "SN0001", passed=True)
    device = tested_device(fx, "SN0001", passed=False)  # the retest failed: the latest record decides
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "test_failed", before, order_id=order, fixture_id="fx-1")


@provokes("key_reused")
def test_key_already_bound_to_another_serial_is_a_clone(
    any_world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = any_world.order(quota=5)
    fx = any_world.fixture("fx-1")
    original = tested_device(fx, "SN0001")
    fx.provision(order, "SN0001", original.csr_pem())
    tested_device(fx, "SN0099")
    clone = original.clone_as("SN0099")
    before = snapshot(any_world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0099", clone.csr_pem()))

    event = assert_refused(any_world.inst, response, "key_reused", before, order_id=order, fixture_id="fx-1")
    assert event["serial"] == "SN0099"


@provokes("serial_has_other_key")
def test_provisioned_serial_asking_again_with_another_key_is_refused(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    fx.provision(order, "SN0001", tested_device(fx, "SN0001").csr_pem())
    impostor = SimulatedDevice("SN0001")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", impostor.csr_pem()))

    assert_refused(world.inst, response, "serial_has_other_key", before, order_id=order, fixture_id="fx-1")


@provokes("unit_revoked")
def test_revoked_unit_asking_again_even_with_its_own_key_is_refused(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    from fabguard.service.authority import revocation

    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    fx.provision(order, "SN0001", device.csr_pem())
    revocation.revoke_unit(world.inst, "SN0001", reason_code="key_compromise", note="key extracted", actor="test")
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "unit_revoked", before, order_id=order, fixture_id="fx-1")


@provokes("issuing_ca_revoked")
def test_order_whose_issuing_ca_was_revoked_issues_nothing(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    from fabguard.service.approvals import requests
    from tests.support import REQUESTER, second_person_approves

    asked = requests.request(world.inst, CaName("issuing-cm-a").value, CaCreation("cm-a", None), by=REQUESTER)
    second_person_approves(world.inst, asked)
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    revoking = requests.request(world.inst, "issuing-cm-a", CaRevocation("ca_compromise", "breach"), by=REQUESTER)
    second_person_approves(world.inst, revoking)
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(world.inst, response, "issuing_ca_revoked", before, order_id=order, fixture_id="fx-1")


# Key attestation (the product's policy; SE chains made for the test, see also tests/api/test_attestation_flow.py)


def _attesting_product(world: World, vendor_pem: str) -> None:
    from fabguard.domain.issuance import AttestationPolicy
    from fabguard.domain.values import ProductId
    from fabguard.service.provisioning import attestation

    attestation.add_root(world.inst, ProductId("sensor"), "se", vendor_pem, actor="test")
    attestation.set_policy(world.inst, ProductId("sensor"), AttestationPolicy.REQUIRED, actor="test")


ATTESTATION_CODES = ("attestation_missing", "attestation_invalid", "attestation_untrusted")


@pytest.mark.parametrize("code", ATTESTATION_CODES)
def test_a_unit_without_a_good_attestation_of_its_key_is_refused_when_the_product_requires_one(
    world: World, http_of: Callable[[FixtureClient], httpx.Client], code: str
) -> None:
    from tests.tpm_support import TestCa, pem

    vendor = TestCa.make("Test SE vendor root")
    _attesting_product(world, vendor.pem)
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    signer = {"attestation_untrusted": TestCa.make("Unknown SE vendor")}.get(code, vendor)
    attested_key = ec.generate_private_key(ec.SECP256R1()).public_key() if code == "attestation_invalid" else None
    body = provision_body(order, "SN0001", device.csr_pem())
    if code != "attestation_missing":
        device_cert = signer.issue("se-device", attested_key or device.key.public_key())
        body["attestation"] = {"format": "se-chain", "chain": [pem(device_cert), signer.pem]}
    before = snapshot(world.inst)

    response = http_of(fx).post(PROVISION, json=body)

    assert_refused(world.inst, response, code, before, order_id=order, fixture_id="fx-1")


for _code in ATTESTATION_CODES:
    provokes(_code)(test_a_unit_without_a_good_attestation_of_its_key_is_refused_when_the_product_requires_one)


def test_every_public_refusal_code_is_provoked_by_a_test_here() -> None:
    assert set(REFUSAL_STATUS) == _PROVOKED


@provokes("rate_limited")
def test_a_fixture_over_its_request_rate_is_refused_and_consumes_nothing(tmp_path: Path) -> None:
    import dataclasses

    from tests.support import new_instance

    inst = new_instance(tmp_path / "home")
    inst.limits = dataclasses.replace(inst.limits, fixture_requests_per_second=1, fixture_request_burst=2)
    world = World.start(inst, tmp_path)
    try:
        order = world.order(quota=5)
        fx = world.fixture("fx-1")
        device = tested_device(fx, "SN0001")  # the upload takes the first token
        with mtls_client(fx) as http:  # closed before the server stops, which waits for open connections
            http.get("/api/v1/fixture/whoami")  # and this the second
            before = snapshot(inst)
            response = http.post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

        assert_refused(inst, response, "rate_limited", before, fixture_id="fx-1")
    finally:
        world.stop()
        inst.close()


# Identity pools (docs/identities.md): a refusal draws nothing either
ALLOCATE = "/api/v1/units/allocate"


def _pools(world: World, pool: dict[str, Any]) -> None:
    identity_pools.set_pools(world.inst, ProductId("sensor"), pool_from_json(pool), actor="test")


def _drawn(inst: Instance) -> int:
    with inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(UnitIdentityRow)).scalar_one())


@provokes("serial_not_allocated")
def test_a_serial_never_allocated_is_refused_where_the_product_takes_only_allocated_serials(
    any_world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    _pools(any_world, {"serials": {"prefix": "AL-", "width": 4, "required": True}})
    order = any_world.order(quota=5)
    fx = any_world.fixture("fx-1")
    serial = SerialFormat("AL-", 4).serial(3).value  # of the format, never allocated
    device = tested_device(fx, serial)
    before = snapshot(any_world.inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, serial, device.csr_pem()))

    assert_refused(any_world.inst, response, "serial_not_allocated", before, order_id=order, fixture_id="fx-1")
    assert _drawn(any_world.inst) == 0


@provokes("identity_pool_exhausted")
def test_an_allocation_past_the_pools_end_is_refused_and_draws_nothing(
    any_world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    _pools(any_world, {"macs": {"prefix": "00-1B-63", "per_unit": 2, "count": 3}})
    order = any_world.order(quota=5)
    fx = any_world.fixture("fx-1")
    assert http_of(fx).post(ALLOCATE, json={"order_id": order, "serial": "SN-1"}).status_code == 201
    before = snapshot(any_world.inst)

    response = http_of(fx).post(ALLOCATE, json={"order_id": order, "serial": "SN-2"})

    assert_refused(any_world.inst, response, "identity_pool_exhausted", before, order_id=order, fixture_id="fx-1")
    assert _drawn(any_world.inst) == 1


@provokes("identity_pool_missing")
def test_an_allocation_for_a_product_without_pools_is_refused(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    before = snapshot(world.inst)

    response = http_of(fx).post(ALLOCATE, json={"order_id": order, "serial": "SN-1"})

    assert_refused(world.inst, response, "identity_pool_missing", before, order_id=order, fixture_id="fx-1")


@provokes("serial_already_allocated")
def test_a_station_serial_allocated_to_another_order_is_refused(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    _pools(world, {"macs": {"prefix": "00-1B-63"}})
    first, second = world.order(quota=5), world.order(quota=5)
    fx = world.fixture("fx-1")
    assert http_of(fx).post(ALLOCATE, json={"order_id": first, "serial": "SN-1"}).status_code == 201
    before = snapshot(world.inst)

    response = http_of(fx).post(ALLOCATE, json={"order_id": second, "serial": "SN-1"})

    assert_refused(world.inst, response, "serial_already_allocated", before, order_id=second, fixture_id="fx-1")
    assert _drawn(world.inst) == 1


@provokes("allocation_serial_invalid")
def test_a_serial_sent_where_the_pool_draws_it_is_refused(
    world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    _pools(world, {"serials": {"prefix": "AL-", "width": 4}})
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    before = snapshot(world.inst)

    response = http_of(fx).post(ALLOCATE, json={"order_id": order, "serial": "MINE-1"})

    assert_refused(world.inst, response, "allocation_serial_invalid", before, order_id=order, fixture_id="fx-1")
    assert _drawn(world.inst) == 0


@provokes("matter_ids_mismatch")
def test_a_matter_unit_whose_dac_would_name_another_product_than_its_payload_is_refused(
    any_world: World, http_of: Callable[[FixtureClient], httpx.Client]
) -> None:
    from fabguard.service.approvals import requests
    from fabguard.service.authority.ca_acts import MatterPaiCreation
    from fabguard.store.identity_models import IdentityPoolRow
    from tests.support import REQUESTER, second_person_approves

    inst = any_world.inst
    second_person_approves(
        inst, requests.request(inst, "pai-sensor", MatterPaiCreation("sensor", 0xFFF1, 0x8000), by=REQUESTER)
    )
    _pools(any_world, {"matter": {"vendor_id": 0xFFF1, "product_id": 0x8000, "iterations": 1000}})
    order = any_world.order(quota=5)
    with inst.db.transaction() as s:  # a pool from before the rule (docs/identities.md): for another product
        row = s.get(IdentityPoolRow, "sensor")
        assert row is not None
        row.matter_product_id = 0x8001
    fx = any_world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    before = snapshot(inst)

    response = http_of(fx).post(PROVISION, json=provision_body(order, "SN0001", device.csr_pem()))

    assert_refused(inst, response, "matter_ids_mismatch", before, order_id=order, fixture_id="fx-1")
    before = snapshot(inst)
    allocating = http_of(fx).post(ALLOCATE, json={"order_id": order, "serial": "SN0001"})
    assert_refused(inst, allocating, "matter_ids_mismatch", before, order_id=order, fixture_id="fx-1")
    assert _drawn(inst) == 0
