"""Licence signers under an offline root: the instance makes the signer's key, the root's ceremony certifies
it (the licence-signer profile, directly under the root), the instance imports it and signs licences that a
device verifies with the root alone; a rotation is a second ceremony, a revocation reaches the devices with
the next ceremony's CRL. Real keys, a real server for the units, SQLite (the ceremony flow is engine-free)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import ProductId, Serial
from fabguard.pki import ceremony, ceremony_root, profiles
from fabguard.pki.licence import LICENCE_SIGNING_EKU, licence_signer_certificate
from fabguard.service.approvals import requests
from fabguard.service.authority import ceremony as instance_side
from fabguard.service.authority import revocation
from fabguard.service.core.instance import Instance
from fabguard.service.royalties import licences
from fabguard.service.royalties.licence_acts import LicenceSignerRevocation
from fabguard.store.licence_models import LicenceSigner
from fabguard_station.licence import LicenceInvalid, verify_licence
from tests.service.authority.test_ceremony import ORG, Ceremony, new_ceremony, offline_instance
from tests.support import REQUESTER, World, new_instance, second_person_approves, tested_device

SENSOR = ProductId("sensor")


@pytest.fixture
def root(tmp_path: Path) -> Ceremony:
    return new_ceremony(tmp_path / "ceremony")


@pytest.fixture
def world(tmp_path: Path, root: Ceremony) -> Iterator[World]:
    """An offline-root instance (SQLite) serving, with the product ``sensor`` and two provisioned units."""
    inst = offline_instance(tmp_path / "home", root)
    w = World.start(inst, tmp_path)
    yield w
    w.stop()
    inst.close()


def _units(world: World) -> dict[str, x509.Certificate]:
    fx, order = world.fixture("fx-1"), world.order(quota=3)
    out = {}
    for serial in ("SN-L1", "SN-L2"):
        pem = fx.provision(order, serial, tested_device(fx, serial).csr_pem()).certificate_pem
        out[serial] = x509.load_pem_x509_certificate(pem.encode())
    return out


def _states(inst: Instance) -> list[tuple[int, str]]:
    return [(s["generation"], s["state"]) for s in licences.signers(inst, SENSOR)]


def _signer_of(document: dict[str, object]) -> x509.Certificate:
    chain = document["chain"]
    assert isinstance(chain, list)
    return x509.load_pem_x509_certificate(str(chain[0]).encode())


def _refused_issue(inst: Instance) -> FabGuardError:
    with pytest.raises(FabGuardError) as refused:
        licences.issue_licence(inst, Serial("SN-L1"), features=["radio"], actor="eng")
    return refused.value


def test_a_licence_signer_is_certified_at_a_ceremony_rotated_at_another_and_revoked_by_its_crl(
    world: World, root: Ceremony
) -> None:
    inst, certs = world.inst, _units(world)
    trusted = x509.load_pem_x509_certificate((root.directory / "root.pem").read_bytes())
    # No signer yet: a licence is refused, naming the ceremony step; nothing is made.
    refused = _refused_issue(inst)
    assert refused.code == "ca_key_offline" and "ceremony add-licence-signer sensor" in refused.message

    request = instance_side.add_licence_signer(inst, SENSOR, actor="admin")
    parsed = ceremony.read_request(request)
    assert [(r.name, r.profile, r.product_id) for r in parsed.requests] == [
        ("licence-signer.sensor.1", "licence-signer", "sensor")
    ]
    assert instance_side.add_licence_signer(inst, SENSOR, actor="admin") == request  # one signer waits at a time
    assert _states(inst) == [(1, "pending")]
    waiting = _refused_issue(inst)  # pending signs nothing
    assert waiting.code == "ca_key_offline" and "ceremony import" in waiting.message

    done = instance_side.import_bundle(inst, root.sign(request), actor="admin")
    assert done.licence_signers == ("sensor 1",) and done.cas == ()
    assert _states(inst) == [(1, "signing")]
    first = licences.issue_licence(inst, Serial("SN-L1"), features=["radio"], actor="eng").document
    signer = _signer_of(first)
    signer.verify_directly_issued_by(trusted)
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [LICENCE_SIGNING_EKU]
    assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    verify_licence(first, device_certificate=certs["SN-L1"], root=trusted, crl=revocation.crl(inst, "root"))

    # Rotation: a second ceremony; until its import the first signer still signs, then it retires.
    rotation = instance_side.add_licence_signer(inst, SENSOR, actor="admin")
    assert [r.name for r in ceremony.read_request(rotation).requests] == ["licence-signer.sensor.2"]
    assert _states(inst) == [(1, "signing"), (2, "pending")]
    with pytest.raises(FabGuardError) as not_yet:  # a pending signer has no certificate to revoke
        requests.request(inst, "sensor", LicenceSignerRevocation(2, "superseded", "x"), by=REQUESTER)
    assert not_yet.value.code == "licence_signer_pending"
    assert _signer_of(licences.issue_licence(inst, Serial("SN-L2"), features=["a"], actor="e").document) == signer
    instance_side.import_bundle(inst, root.sign(rotation), actor="admin")
    assert _states(inst) == [(1, "retired"), (2, "signing")]
    second = licences.issue_licence(inst, Serial("SN-L2"), features=["radio"], actor="eng").document
    assert _signer_of(second) != signer

    # Revoking the first signer: marked at once under dual control; the root's CRL lists it from the next ceremony.
    act = requests.request(inst, "sensor", LicenceSignerRevocation(1, "key_compromise", "key leaked"), by=REQUESTER)
    result = second_person_approves(inst, act)
    assert "next ceremony" in str(result)
    assert _states(inst) == [(1, "revoked"), (2, "signing")]
    served = revocation.crl(inst, "root")
    verify_licence(first, device_certificate=certs["SN-L1"], root=trusted, crl=served)  # not yet on the CRL
    crl_request = ceremony.read_request(instance_side.request_bundle(inst))
    assert [e.serial_number for e in crl_request.revoked] == [signer.serial_number]
    instance_side.import_bundle(inst, root.sign(instance_side.request_bundle(inst), crl_only=True), actor="admin")
    served = revocation.crl(inst, "root")
    with pytest.raises(LicenceInvalid) as revoked:
        verify_licence(first, device_certificate=certs["SN-L1"], root=trusted, crl=served)
    assert revoked.value.code == "licence_signer_revoked"
    verify_licence(second, device_certificate=certs["SN-L2"], root=trusted, crl=served)


def test_import_refuses_a_crl_that_leaves_out_a_revoked_licence_signer(world: World, root: Ceremony) -> None:
    inst = world.inst
    instance_side.import_bundle(inst, root.sign(instance_side.add_licence_signer(inst, SENSOR, actor="a")), actor="a")
    stale = instance_side.request_bundle(inst)  # asked before the revocation: its CRL will not list the signer
    second_person_approves(
        inst, requests.request(inst, "sensor", LicenceSignerRevocation(1, "key_compromise", "x"), by=REQUESTER)
    )
    with pytest.raises(FabGuardError) as refused:
        instance_side.import_bundle(inst, root.sign(stale, crl_only=True), actor="a")
    assert refused.value.code == "crl_invalid"


def test_import_refuses_a_licence_signer_of_another_profile_key_product_or_root(
    world: World, root: Ceremony, tmp_path: Path
) -> None:
    inst = world.inst
    signed = root.sign(instance_side.add_licence_signer(inst, SENSOR, actor="a"))
    name = "licence-signer.sensor.1"
    key = x509.load_pem_x509_certificate(signed[f"{name}.pem"]).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    now, other_key = datetime.now(UTC), ec.generate_private_key(ec.SECP256R1()).public_key()
    with ceremony_root.opened_root(root.directory) as opened:
        bad = {
            "a CA": (profiles.intermediate_ca(opened.issuer, key, ORG, "sensor licences", now), "ceremony_profile_mismatch"),
            "another product": (licence_signer_certificate(opened.issuer, key, ORG, "other", now), "ceremony_profile_mismatch"),
            "another key": (licence_signer_certificate(opened.issuer, other_key, ORG, "sensor", now), "certificate_key_mismatch"),
        }  # fmt: skip
    with ceremony_root.opened_root(new_ceremony(tmp_path / "other", common_name="Other Root").directory) as other:
        bad["another root"] = (
            licence_signer_certificate(other.issuer, key, ORG, "sensor", now),
            "certificate_untrusted",
        )
    for what, (cert, code) in bad.items():
        files = {**signed, f"{name}.pem": cert.public_bytes(serialization.Encoding.PEM)}
        with pytest.raises(FabGuardError) as refused:
            instance_side.import_bundle(inst, files, actor="a")
        assert refused.value.code == code, what
    assert _states(inst) == [(1, "pending")]  # nothing was imported
    instance_side.import_bundle(inst, signed, actor="a")
    assert _states(inst) == [(1, "signing")]


def test_an_online_root_instance_refuses_the_ceremony_step(tmp_path: Path) -> None:
    from fabguard.service.catalog import product_catalog

    inst = new_instance(tmp_path / "home")
    try:
        product_catalog.create_product(inst, product_id=SENSOR, name="Sensor", actor="test")
        with pytest.raises(FabGuardError) as refused:
            instance_side.add_licence_signer(inst, SENSOR, actor="admin")
        assert licences.signers(inst, SENSOR) == []
    finally:
        inst.close()
    assert refused.value.code == "root_not_offline" and "signs its CAs itself" in refused.value.message


def test_a_pending_signer_keeps_its_csr_apart_until_its_certificate_is_imported(world: World, root: Ceremony) -> None:
    """The CSR has a column of its own (``csr_pem``): a pending signer has no ``certificate_pem`` at all, and
    the import fills it with the certificate whose key is the CSR's."""
    inst = world.inst
    request = instance_side.add_licence_signer(inst, SENSOR, actor="admin")
    with inst.db.read() as s:
        row = s.execute(select(LicenceSigner).where(LicenceSigner.product_id == "sensor")).scalar_one()
        assert row.pending and row.certificate_pem is None and row.csr_pem is not None
        csr = x509.load_pem_x509_csr(row.csr_pem.encode())
    assert csr.is_signature_valid
    instance_side.import_bundle(inst, root.sign(request), actor="admin")
    with inst.db.read() as s:
        row = s.execute(select(LicenceSigner).where(LicenceSigner.product_id == "sensor")).scalar_one()
        assert not row.pending and row.certificate_pem is not None
        cert = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    assert cert.public_key() == csr.public_key() and cert.subject == csr.subject
