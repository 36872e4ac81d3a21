"""Field genuineness checks over the real API on both engines: every verdict reason, every refusal,
the clone signals and their alert, and one nonce answered twice at once (exactly one check wins).

One world per engine for the module (a server, an order, provisioned devices); each test asks its own
challenges, so the tests do not depend on one another's order.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.field import CHALLENGE_CONTEXT
from fabguard.domain.values import Serial
from fabguard.fixture.device import FIELD_CHALLENGE_CONTEXT, SimulatedDevice
from fabguard.ledger.verify import verify_export
from fabguard.pki import profiles
from fabguard.pki.field_nonce import nonce_digest
from fabguard.service.access import tokens
from fabguard.service.analytics import dashboard_queries
from fabguard.service.analytics.webhooks import DeliveryPolicy, send_round
from fabguard.service.authority import revocation
from fabguard.service.core.instance import Instance
from fabguard.service.field import genuineness
from fabguard.service.ledger import merkle_log
from fabguard.service.operations import maintenance
from fabguard.service.provisioning import reenrolment
from fabguard.store.field_models import FieldCheck, FieldNonce
from fabguard.store.models import Event
from tests.analytics.test_webhooks import Receiver, receiver, wait_for
from tests.support import World, create_pg_database, drop_pg_database, new_instance, pg_admin_url, tested_device

__all__ = ["receiver"]  # the loopback webhook receiver of the webhook tests


@dataclass
class Field:
    world: World
    http: httpx.Client  # a field token's client
    good: SimulatedDevice
    revoked: SimulatedDevice
    renewed: SimulatedDevice
    old_renewed_pem: str
    order: str

    @property
    def inst(self) -> Instance:
        return self.world.inst

    def challenge(self) -> str:
        r = self.http.post("/api/v1/field/challenge")
        assert r.status_code == 200, r.text
        return str(r.json()["nonce"])

    def verify(self, body: dict[str, Any]) -> httpx.Response:
        return self.http.post("/api/v1/field/verify", json=body)

    def check(self, device: SimulatedDevice, source: str | None = None) -> dict[str, Any]:
        r = self.verify(device.field_answer(self.challenge(), source=source))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Field]:
    url = None
    if request.param == "postgres":
        if not pg_admin_url():
            pytest.skip("FABGUARD_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
        url = create_pg_database()
    tmp = tmp_path_factory.mktemp(f"field-{request.param}")
    inst = new_instance(tmp / "home", url)
    world = World.start(inst, tmp)
    try:
        order = world.order(quota=10)
        fx = world.fixture("fx-field")
        devices = {}
        for serial in ("SN-F1", "SN-F2", "SN-F3", "SN-F4"):
            d = tested_device(fx, serial)
            d.certificate_pem = fx.provision(order, serial, d.csr_pem()).certificate_pem
            devices[serial] = d
        revocation.revoke_unit(inst, "SN-F2", reason_code="key_compromise", note="stolen board", actor="test")
        renewed = devices["SN-F3"]
        old_pem = renewed.certificate_pem
        assert old_pem is not None
        old_der = x509.load_pem_x509_certificate(old_pem.encode()).public_bytes(serialization.Encoding.DER)
        renewed.certificate_pem = reenrolment.reenroll_unit(inst, old_der, renewed.csr_pem().encode()).certificate_pem
        _, secret = tokens.create_token(inst, name="support-desk", role="field", actor="test")
        http = httpx.Client(
            base_url=world.url,
            verify=ssl.create_default_context(cafile=str(world.root_ca)),
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        yield Field(world, http, devices["SN-F1"], devices["SN-F2"], renewed, old_pem, order)
        http.close()
    finally:
        world.stop()
        inst.close()
        if url:
            drop_pg_database(url)


def _forged(inst: Instance, serial: str, key: ec.EllipticCurvePrivateKey, *, days_ago: int = 0) -> str:
    """A certificate signed with our real issuing CA key but never recorded: a rogue issuance."""
    issuer = inst.cas.issuer("issuing")
    now = inst.clock() - timedelta(days=days_ago)
    lifetime = timedelta(days=1) if days_ago else None
    cert = profiles.idevid_certificate(
        issuer, key.public_key(), Serial(serial), "Acme Devices", "sensor", now, lifetime
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _self_made(serial: str, key: ec.EllipticCurvePrivateKey) -> str:
    """A certificate from a counterfeiter's own CA with our names on it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Acme Devices Issuing CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_the_sdk_signs_the_same_context_the_server_checks() -> None:
    assert FIELD_CHALLENGE_CONTEXT == CHALLENGE_CONTEXT


def test_a_provisioned_device_is_genuine_and_the_check_is_recorded_with_where_from(fw: Field) -> None:
    """A genuine check with no clone signal is a field_checks row, not a ledger event (ADR 0015)."""
    with fw.inst.db.read() as s:
        last_seq = s.execute(select(func.max(Event.seq))).scalar_one()
    body = fw.check(fw.renewed, source="store-berlin")
    assert body["genuine"] is True and body["reason"] is None and body["clone"] is None
    assert body["serial"] == "SN-F3" and body["order_id"] == fw.order
    assert body["seq"] is None and body["source"] == "store-berlin" and body["client"] == "127.0.0.1"
    with fw.inst.db.read() as s:
        row = s.get(FieldCheck, body["check_id"])
        assert s.execute(select(func.max(Event.seq))).scalar_one() == last_seq  # no event
    assert row is not None and row.genuine and row.place == "store-berlin" and row.seq is None
    assert row.serial == "SN-F3" and "support-desk" in row.actor and row.client == "127.0.0.1"


def test_a_genuine_check_with_a_clone_signal_is_an_event_too(fw: Field) -> None:
    fw.check(fw.renewed, source="store-porto")
    body = fw.check(fw.renewed, source="store-tallinn")
    assert (body["genuine"], body["clone"], body["other_place"]) == (True, "two_places", "store-porto")
    with fw.inst.db.read() as s:
        event = s.execute(select(Event).where(Event.seq == body["seq"])).scalar_one()
        row = s.get(FieldCheck, body["check_id"])
    detail = json.loads(event.detail)
    assert event.kind == "field.checked" and event.serial == "SN-F3" and event.code is None
    assert detail["source"] == "store-tallinn" and detail["genuine"] is True and detail["clone"] == "two_places"
    assert "support-desk" in (event.actor or "")
    assert row is not None and row.seq == body["seq"] and row.clone == "two_places"


@pytest.mark.parametrize(
    ("case", "reason", "clone"),
    [
        ("self_made_ca", "chain_untrusted", "not_issued"),
        ("expired", "certificate_expired", None),
        ("rogue_serial", "serial_unknown", "not_issued"),
        ("other_key", "key_mismatch", "not_issued"),
        ("superseded", "certificate_superseded", None),
        ("revoked", "unit_revoked", "revoked_active"),
        ("copied_certificate", "signature_invalid", None),
        ("no_context", "signature_invalid", None),
        ("other_nonce", "signature_invalid", None),
    ],
)
def test_each_reason_a_device_is_not_genuine(fw: Field, case: str, reason: str, clone: str | None) -> None:
    nonce = fw.challenge()
    key = ec.generate_private_key(ec.SECP256R1())
    device = SimulatedDevice("SN-F1", key)
    if case == "self_made_ca":
        device.certificate_pem = _self_made("SN-F1", key)
    elif case == "expired":
        device.certificate_pem = _forged(fw.inst, "SN-F1", key, days_ago=3)
    elif case == "rogue_serial":
        device = SimulatedDevice("SN-NEVER", key, _forged(fw.inst, "SN-NEVER", key))
    elif case == "other_key":
        device.certificate_pem = _forged(fw.inst, "SN-F1", key)
    elif case == "superseded":
        device = SimulatedDevice("SN-F3", fw.renewed.key, fw.old_renewed_pem)
    elif case == "revoked":
        device = fw.revoked
    else:
        device.certificate_pem = fw.good.certificate_pem  # the real certificate, without its key
        if case != "copied_certificate":
            device.key = fw.good.key
    body = device.field_answer(nonce)
    if case == "no_context":  # a signature over the bare nonce: what another protocol might have signed
        raw = fw.good.key.sign(bytes.fromhex(nonce), ec.ECDSA(hashes.SHA256()))
        body["signature"] = base64.b64encode(raw).decode()
    elif case == "other_nonce":
        body["signature"] = fw.good.answer_challenge(fw.challenge())
    r = fw.verify(body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["genuine"], answer["reason"], answer["clone"]) == (False, reason, clone)
    with fw.inst.db.read() as s:
        event = s.execute(select(Event).where(Event.seq == answer["seq"])).scalar_one()
    assert event.kind == "field.checked" and event.code == reason


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"nonce": "00" * 31}, "nonce_invalid"),
        ({"signature": "not base64!"}, "field_signature_malformed"),
        ({"chain": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "field_chain_invalid"),
        ({"source": "\u0000bad"}, "field_source_invalid"),
        ({"source": "a" * 101}, "field_source_invalid"),  # the documented code, not the schema's invalid_request
    ],
)
def test_a_malformed_answer_is_422_recorded_and_spends_no_nonce(fw: Field, change: dict[str, str], code: str) -> None:
    nonce = fw.challenge()
    good = fw.good.field_answer(nonce)
    r = fw.verify({**good, **change})
    assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    with fw.inst.db.read() as s:
        last = s.execute(select(Event).order_by(Event.seq.desc()).limit(1)).scalar_one()
    assert (last.kind, last.code) == ("field.refused", code)
    assert fw.verify(good).json()["genuine"] is True  # the nonce was not spent


def test_an_unknown_a_used_and_an_expired_nonce_are_refused(fw: Field) -> None:
    r = fw.verify(fw.good.field_answer("ab" * 32))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "nonce_unknown")
    nonce = fw.challenge()
    assert fw.verify(fw.good.field_answer(nonce)).status_code == 200
    r = fw.verify(fw.good.field_answer(nonce))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "nonce_used")
    nonce = fw.challenge()
    now = fw.inst.clock()
    later = Instance.open(fw.inst.home, clock=lambda: now + timedelta(minutes=6), migrate=False)
    try:
        origin = genuineness.Origin("test")
        answer = genuineness.parse_answer(later, origin, **_parts(fw.good.field_answer(nonce)))
        with pytest.raises(FabGuardError) as refused:
            genuineness.verify(later, answer, origin)
    finally:
        later.close()
    assert refused.value.code == "nonce_expired"
    assert fw.verify(fw.good.field_answer(nonce)).status_code == 200  # expiry spent nothing either


def test_maintenance_forgets_used_challenges_once_expired_and_an_answer_to_one_is_still_refused(fw: Field) -> None:
    nonce = fw.challenge()
    body = fw.good.field_answer(nonce)
    assert fw.verify(body).json()["genuine"] is True
    digest = nonce_digest(bytes.fromhex(nonce))
    assert _replay_set_holds(fw.inst, digest)
    now = fw.inst.clock()
    later = Instance.open(fw.inst.home, clock=lambda: now + timedelta(minutes=7), migrate=False)
    try:
        maintenance.run_round(later)
        assert not _replay_set_holds(later, digest)  # forgotten: past its expiry and the margin
        assert genuineness.forget_expired_nonces(later) == 0  # all gone already
        origin = genuineness.Origin("test")
        answer = genuineness.parse_answer(later, origin, **_parts(body))
        with pytest.raises(FabGuardError) as refused:
            genuineness.verify(later, answer, origin)
    finally:
        later.close()
    assert refused.value.code == "nonce_expired"  # the expiry the nonce carries refuses it, not the set


def _replay_set_holds(inst: Instance, digest: str) -> bool:
    with inst.db.read() as s:
        return s.get(FieldNonce, digest) is not None


def _parts(body: dict[str, str]) -> dict[str, str]:
    return {"nonce": body["nonce"], "signature": body["signature"], "chain_pem": body["chain"]}


def test_two_answers_to_one_nonce_at_once_exactly_one_is_checked(fw: Field) -> None:
    nonce = fw.challenge()
    body = fw.good.field_answer(nonce)
    before = _check_count(fw.inst)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: fw.verify(body), range(6)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 409, 409, 409, 409, 409], [r.text for r in answers]
    assert all(r.json()["error"]["code"] == "nonce_used" for r in answers if r.status_code == 409)
    assert _check_count(fw.inst) == before + 1  # one check recorded, and the five refusals as refusals only


def _check_count(inst: Instance) -> int:
    with inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(FieldCheck)).scalar_one())


def test_one_serial_from_two_places_at_once_raises_a_field_clone_alert(fw: Field) -> None:
    first = fw.check(fw.good, source="store-lisbon")
    second = fw.check(fw.good, source="store-oslo")
    assert first["clone"] in (None, "two_places")
    assert (second["clone"], second["other_place"]) == ("two_places", "store-lisbon")
    dashboard_queries.refresh(fw.inst, max_events=None)
    alerts = {a["kind"]: a for a in dashboard_queries.overview(fw.inst)["alerts"] if a["kind"] == "field_clone"}
    assert alerts, "no field_clone alert"
    r = fw.world.admin().get("/api/v1/field/checks")
    assert r.status_code == 200 and any(c["clone"] == "two_places" for c in r.json())


def test_only_a_field_token_or_an_admin_asks_challenges(fw: Field) -> None:
    _, engineer = tokens.create_token(fw.inst, name="eng", role="engineer", actor="test")
    with httpx.Client(
        base_url=fw.world.url, verify=ssl.create_default_context(cafile=str(fw.world.root_ca)), timeout=30
    ) as http:
        r = http.post("/api/v1/field/challenge", headers={"Authorization": f"Bearer {engineer}"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
        assert http.post("/api/v1/field/challenge").status_code == 401
    with fw.world.admin() as admin:
        assert admin.post("/api/v1/field/challenge").status_code == 200


def test_every_check_reaches_the_fold_and_the_reconciliation(fw: Field, tmp_path: Path) -> None:
    """field.* events are folded and exported like any other, and the audit of an export passes with a
    re-enrolled unit in it (its renewed certificate is recorded by unit.reenrolled)."""
    fw.check(fw.good)
    dashboard_queries.refresh(fw.inst, max_events=None)
    merkle_log.export(fw.inst, tmp_path / "export")
    assert verify_export(tmp_path / "export").entries > 0


def test_a_field_clone_alert_reaches_a_webhook(fw: Field, receiver: Receiver) -> None:
    (fw.inst.home / "webhooks.json").write_text(
        json.dumps([{"name": "soc", "url": receiver.url, "secret": "s" * 24, "min_severity": "critical"}])
    )
    try:
        fw.check(fw.good, source="scanner-1")
        fw.check(fw.good, source="scanner-2")
        dashboard_queries.refresh(fw.inst, max_events=None)
        send_round(fw.inst, policy=DeliveryPolicy(max_attempts=2, backoff=0.01))  # the server's sender may go first
        wait_for(lambda: any(b["alert"]["kind"] == "field_clone" for b in receiver.bodies()))
    finally:
        (fw.inst.home / "webhooks.json").unlink()
    sent = [b["alert"] for b in receiver.bodies() if b["alert"]["kind"] == "field_clone"]
    assert any("SN-F1" in a["message"] and a["severity"] == "critical" for a in sent)
