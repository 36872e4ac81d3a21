"""Feature licences on both engines: only a provisioned, non-revoked unit gets one; the device verifies it
with its root alone (fixture SDK) and refuses a tampered, misbound, expired or wrongly signed one."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import Serial
from fabguard.fixture import licence as sdk
from fabguard.ledger.entry import decode_entry
from fabguard.pki import licence as pki_licence
from fabguard.pki import profiles
from fabguard.service.authority import revocation
from fabguard.service.royalties import licences
from fabguard.store.licence_models import Licence, LicenceSigner
from fabguard.store.models import Event
from tests.support import World, tested_device


def _provisioned(world: World) -> tuple[World, dict[str, x509.Certificate]]:
    order = world.order(quota=3)
    fx = world.fixture("fx-1")
    certs = {}
    for serial in ("SN-L1", "SN-L2"):
        pem = fx.provision(order, serial, tested_device(fx, serial).csr_pem()).certificate_pem
        certs[serial] = x509.load_pem_x509_certificate(pem.encode())
    return world, certs


@pytest.fixture
def units_any(any_world: World) -> tuple[World, dict[str, x509.Certificate]]:
    """Issuance on each engine."""
    return _provisioned(any_world)


@pytest.fixture
def units(world: World) -> tuple[World, dict[str, x509.Certificate]]:
    """The device-side checks (no database of their own): SQLite is enough."""
    return _provisioned(world)


def _root(world: World) -> x509.Certificate:
    return world.inst.cas.certificate("root")


def test_a_licence_verifies_on_its_device_with_the_root_alone_and_is_a_ledger_event(
    units_any: tuple[World, dict[str, x509.Certificate]],
) -> None:
    world, certs = units_any
    until = world.inst.clock() + timedelta(days=30)
    issued = licences.issue_licence(
        world.inst, Serial("SN-L1"), features=["radio.lte", "analytics", "radio.lte"], actor="eng", not_after=until
    )
    wire = json.dumps(issued.document)  # what travels to the device
    ok = sdk.verify_licence(wire, device_certificate=certs["SN-L1"], root=_root(world))
    assert ok.features == ("analytics", "radio.lte") and ok.serial == "SN-L1" and ok.product_id == "sensor"
    assert ok.not_after is not None and abs(ok.not_after - until) < timedelta(seconds=1)

    with world.inst.db.read() as s:
        entry = decode_entry(
            bytes(s.execute(select(Event.entry).where(Event.seq == issued.ledger_entry + 1)).scalar_one())
        )
        kinds = [k for (k,) in s.execute(select(Event.kind).where(Event.kind.like("licence.%")).order_by(Event.seq))]
    assert entry["kind"] == "licence.issued" and entry["serial"] == "SN-L1" and entry["actor"] == "eng"
    assert entry["detail"]["licence_id"] == issued.licence_id and entry["detail"]["features"] == [
        "analytics",
        "radio.lte",
    ]
    assert kinds == ["licence.signer_created", "licence.issued"]
    second = licences.issue_licence(world.inst, Serial("SN-L2"), features=["analytics"], actor="eng")
    assert second.document["chain"] == issued.document["chain"]  # one signer per product, made once
    assert [d["id"] for d in licences.licences_of(world.inst, "SN-L1")] == [issued.licence_id]


def test_the_device_refuses_a_tampered_misbound_or_expired_licence(
    units: tuple[World, dict[str, x509.Certificate]],
) -> None:
    world, certs = units
    root = _root(world)
    doc = licences.issue_licence(
        world.inst,
        Serial("SN-L1"),
        features=["analytics"],
        actor="eng",
        not_after=world.inst.clock() + timedelta(hours=1),
    ).document

    tampered = json.loads(json.dumps(doc))
    tampered["licence"]["features"].append("radio.lte")
    cases = [
        (tampered, certs["SN-L1"], None, "licence_tampered"),
        (doc, certs["SN-L2"], None, "licence_wrong_device"),
        (doc, certs["SN-L1"], datetime.now(UTC) + timedelta(hours=2), "licence_expired"),
        ({"licence": {}}, certs["SN-L1"], None, "licence_malformed"),
        (b"\xff not json", certs["SN-L1"], None, "licence_malformed"),
        # json.loads reads NaN, but a NaN has no canonical form: malformed, not a crash.
        (
            json.dumps(doc).replace('"features": ["analytics"]', '"features": ["analytics"], "x": NaN'),
            certs["SN-L1"],
            None,
            "licence_malformed",
        ),
    ]
    for document, device, now, code in cases:
        with pytest.raises(sdk.LicenceInvalid) as err:
            sdk.verify_licence(document, device_certificate=device, root=root, now=now)
        assert err.value.code == code


def test_a_signer_not_certified_by_the_root_or_without_the_licence_purpose_is_refused(
    units: tuple[World, dict[str, x509.Certificate]],
) -> None:
    world, certs = units
    inst, root = world.inst, _root(world)
    body = licences.issue_licence(inst, Serial("SN-L1"), features=["analytics"], actor="eng").document["licence"]
    now = inst.clock()

    other_root = profiles.self_signed_root(ec.generate_private_key(ec.SECP256R1()), "Mallory", "Mallory Root", now)
    key = ec.generate_private_key(ec.SECP256R1())
    foreign = pki_licence.licence_signer_certificate(other_root, key.public_key(), "Mallory", "sensor", now)
    # A key the real root certified, but as a device (the issuing CA's end entity), not for licences.
    issuing = inst.cas.issuer("issuing")
    device_like = profiles.idevid_certificate(issuing, key.public_key(), Serial("X-1"), "Acme", "sensor", now)
    by_root_no_eku = profiles.server_certificate(inst.cas.root_issuer(), key.public_key(), "Acme", ["x.test"], now)
    # A genuine licence signer of the real root, but another product's: it must not license this one.
    other_product = pki_licence.licence_signer_certificate(inst.cas.root_issuer(), key.public_key(), "Acme", "tag", now)
    for cert in (foreign, device_like, by_root_no_eku, other_product):
        forged = pki_licence.sign_licence(body, profiles.Issuer(cert, key))
        with pytest.raises(sdk.LicenceInvalid) as err:
            sdk.verify_licence(forged, device_certificate=certs["SN-L1"], root=root)
        assert err.value.code == "licence_untrusted", cert.subject


def test_only_a_provisioned_non_revoked_unit_gets_a_licence_and_a_refusal_changes_nothing(
    units_any: tuple[World, dict[str, x509.Certificate]],
) -> None:
    world, _ = units_any
    inst = world.inst
    revocation.revoke_unit(inst, "SN-L2", reason_code="key_compromise", note="cloned", actor="admin")
    before = _licence_rows(world)
    cases = [
        ("SN-L2", ["analytics"], None, "unit_revoked"),
        ("SN-NONE", ["analytics"], None, "unit_not_found"),
        ("SN-L1", [], None, "invalid_feature"),
        ("SN-L1", ["Radio LTE"], None, "invalid_feature"),
        ("SN-L1", ["analytics"], inst.clock() - timedelta(seconds=1), "licence_expiry_invalid"),
    ]
    for serial, features, until, code in cases:
        with pytest.raises(FabGuardError) as err:
            licences.issue_licence(inst, Serial(serial), features=features, actor="eng", not_after=until)
        assert err.value.code == code
    assert _licence_rows(world) == before
    with inst.db.read() as s:
        refused = s.execute(select(Event.serial, Event.code).where(Event.kind == "licence.refused")).all()
    assert [tuple(r) for r in refused] == [("SN-L2", "unit_revoked")]


def test_openssl_verifies_the_signer_certificate_to_the_root_for_no_other_purpose(
    units: tuple[World, dict[str, x509.Certificate]], tmp_path: Path
) -> None:
    world, _ = units
    chain = licences.issue_licence(world.inst, Serial("SN-L1"), features=["analytics"], actor="eng").document["chain"]
    (tmp_path / "signer.pem").write_text(chain[0])
    root = str(world.root_ca)
    ok = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", root, str(tmp_path / "signer.pem")],
                        capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for purpose in ("sslserver", "sslclient", "smimesign"):
        wrong = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", root, str(tmp_path / "signer.pem")],
                               capture_output=True, text=True, check=False)  # fmt: skip
        assert wrong.returncode != 0, purpose
    signer = x509.load_pem_x509_certificate(chain[0].encode())
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [sdk.LICENCE_SIGNING_EKU] == [pki_licence.LICENCE_SIGNING_EKU]
    assert signer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != world.inst.cas.issuer("issuing").certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )  # its own key, not the device-issuing CA's


def _licence_rows(world: World) -> int:
    with world.inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(Licence)).scalar_one())


def test_first_licences_issued_at_once_share_one_signer(units_any: tuple[World, dict[str, x509.Certificate]]) -> None:
    """Two first licences of a product at the same time: one signer is registered, both licences verify."""
    world, certs = units_any
    serials = ("SN-L1", "SN-L2") * 3
    barrier = threading.Barrier(len(serials))

    def issue(serial: str) -> dict[str, object]:
        barrier.wait()
        return licences.issue_licence(world.inst, Serial(serial), features=["analytics"], actor="eng").document

    with ThreadPoolExecutor(len(serials)) as pool:
        docs = list(pool.map(issue, serials))
    with world.inst.db.read() as s:
        signers = s.execute(select(func.count()).select_from(LicenceSigner)).scalar_one()
    assert signers == 1
    assert len(list(world.inst.keys.directory.glob("licence-sensor-*"))) == 1  # a losing rival's key is gone
    for serial, doc in zip(serials, docs, strict=True):
        sdk.verify_licence(doc, device_certificate=certs[serial], root=_root(world))


def test_a_revocation_committed_while_the_licence_is_signed_wins(
    units_any: tuple[World, dict[str, x509.Certificate]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the unit is revoked (for real) between the first check and the write."""
    world, _ = units_any
    inst, sign = world.inst, licences.sign_licence

    def revoked_meanwhile(body: dict[str, object], signer: profiles.Issuer) -> dict[str, object]:
        revocation.revoke_unit(inst, "SN-L1", reason_code="key_compromise", note="cloned", actor="admin")
        return sign(body, signer)

    monkeypatch.setattr(licences, "sign_licence", revoked_meanwhile)
    with pytest.raises(FabGuardError) as err:
        licences.issue_licence(inst, Serial("SN-L1"), features=["analytics"], actor="eng")
    assert err.value.code == "unit_revoked"
    assert _licence_rows(world) == 0
    with inst.db.read() as s:
        kinds = [k for (k,) in s.execute(select(Event.kind).where(Event.serial == "SN-L1").order_by(Event.seq))]
    assert kinds[-2:] == ["unit.revoked", "licence.refused"] and "licence.issued" not in kinds
