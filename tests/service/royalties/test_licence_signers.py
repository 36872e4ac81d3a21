"""Licence signers rotate with an overlap and can be revoked under dual control, on both engines: a licence
signed before a rotation stays valid, a revoked signer's licences are refused by a device that checks the
root's CRL, and the next licence gets a signer of its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import ProductId, Serial
from fabguard.fixture import licence as sdk
from fabguard.service.approvals import requests
from fabguard.service.authority import revocation
from fabguard.service.royalties import licences
from fabguard.service.royalties.licence_acts import LicenceSignerRevocation
from tests.support import REQUESTER, World, second_person_approves, tested_device

SENSOR = ProductId("sensor")


@pytest.fixture
def provisioned(any_world: World) -> tuple[World, dict[str, x509.Certificate]]:
    order = any_world.order(quota=3)
    fx = any_world.fixture("fx-1")
    certs = {}
    for serial in ("SN-R1", "SN-R2"):
        pem = fx.provision(order, serial, tested_device(fx, serial).csr_pem()).certificate_pem
        certs[serial] = x509.load_pem_x509_certificate(pem.encode())
    return any_world, certs


def _signer_serial(document: dict[str, object]) -> int:
    chain = document["chain"]
    assert isinstance(chain, list)
    return x509.load_pem_x509_certificate(str(chain[0]).encode()).serial_number


def test_a_rotation_keeps_old_licences_valid_and_a_revocation_ends_them(
    provisioned: tuple[World, dict[str, x509.Certificate]], tmp_path: Path
) -> None:
    world, certs = provisioned
    inst, root = world.inst, world.inst.cas.certificate("root")
    before = licences.issue_licence(inst, Serial("SN-R1"), features=["radio"], actor="eng").document
    rotated = licences.rotate_signer(inst, SENSOR, actor="admin")
    assert rotated.generation == 2
    after = licences.issue_licence(inst, Serial("SN-R2"), features=["radio"], actor="eng").document
    assert _signer_serial(before) != _signer_serial(after)
    assert [(s["generation"], s["state"]) for s in licences.signers(inst, SENSOR)] == [(1, "retired"), (2, "signing")]
    for doc, serial in ((before, "SN-R1"), (after, "SN-R2")):  # the overlap: both verify
        sdk.verify_licence(doc, device_certificate=certs[serial], root=root, crl=revocation.crl(inst, "root"))

    # Revoking the retired signer takes two people; until approved, nothing changes.
    pending = requests.request(inst, "sensor", LicenceSignerRevocation(1, "key_compromise", "key leaked"), by=REQUESTER)
    sdk.verify_licence(before, device_certificate=certs["SN-R1"], root=root, crl=revocation.crl(inst, "root"))
    second_person_approves(inst, pending)
    crl = revocation.crl(inst, "root")
    with pytest.raises(sdk.LicenceInvalid) as refused:
        sdk.verify_licence(before, device_certificate=certs["SN-R1"], root=root, crl=crl)
    assert refused.value.code == "licence_signer_revoked"
    sdk.verify_licence(after, device_certificate=certs["SN-R2"], root=root, crl=crl)
    sdk.verify_licence(before, device_certificate=certs["SN-R1"], root=root)  # a device without the CRL cannot know

    # openssl, as a relying party: the revoked signer's certificate fails -crl_check against the root's CRL.
    signer_pem = tmp_path / "signer.pem"
    signer_pem.write_text(str(before["chain"][0]))  # type: ignore[index]
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "root.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CAfile",
            tmp_path / "root.pem",
            "-CRLfile",
            tmp_path / "root.crl",
            "-purpose",
            "any",
            signer_pem,
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "revoked" in (out.stdout + out.stderr)


def test_revoking_the_signing_signer_makes_the_next_licence_take_a_new_one(
    provisioned: tuple[World, dict[str, x509.Certificate]],
) -> None:
    world, certs = provisioned
    inst, root = world.inst, world.inst.cas.certificate("root")
    first = licences.issue_licence(inst, Serial("SN-R1"), features=["a"], actor="eng").document
    second_person_approves(
        inst, requests.request(inst, "sensor", LicenceSignerRevocation(1, "key_compromise", "lost"), by=REQUESTER)
    )
    again = licences.issue_licence(inst, Serial("SN-R1"), features=["a"], actor="eng").document
    assert _signer_serial(again) != _signer_serial(first)
    crl = revocation.crl(inst, "root")
    sdk.verify_licence(again, device_certificate=certs["SN-R1"], root=root, crl=crl)
    assert [s["state"] for s in licences.signers(inst, SENSOR)] == ["revoked", "signing"]


def test_a_revocation_of_no_such_signer_or_reason_is_refused_when_asked(
    provisioned: tuple[World, dict[str, x509.Certificate]],
) -> None:
    inst = provisioned[0].inst
    licences.issue_licence(inst, Serial("SN-R1"), features=["a"], actor="eng")
    for params, code in (
        (LicenceSignerRevocation(7, "key_compromise", "x"), "licence_signer_not_found"),
        (LicenceSignerRevocation(1, "because", "x"), "invalid_reason"),
    ):
        with pytest.raises(FabGuardError) as refused:
            requests.request(inst, "sensor", params, by=REQUESTER)
        assert refused.value.code == code


def test_a_crl_not_from_the_root_is_refused(units: tuple[World, dict[str, x509.Certificate]]) -> None:
    world, certs = units
    doc = licences.issue_licence(world.inst, Serial("SN-R1"), features=["a"], actor="eng").document
    other = revocation.crl(world.inst, "issuing")
    with pytest.raises(sdk.LicenceInvalid) as refused:
        sdk.verify_licence(
            json.dumps(doc), device_certificate=certs["SN-R1"], root=world.inst.cas.certificate("root"), crl=other
        )
    assert refused.value.code == "licence_crl_invalid"


@pytest.fixture
def units(world: World) -> tuple[World, dict[str, x509.Certificate]]:
    order = world.order(quota=1)
    fx = world.fixture("fx-1")
    pem = fx.provision(order, "SN-R1", tested_device(fx, "SN-R1").csr_pem()).certificate_pem
    return world, {"SN-R1": x509.load_pem_x509_certificate(pem.encode())}


def test_signers_are_listed_and_rotated_over_the_api(world: World) -> None:
    with world.admin() as http:
        assert http.get("/api/v1/products/sensor/licence-signers").json() == []
        made = http.post("/api/v1/products/sensor/licence-signers/rotate")
        assert made.status_code == 201 and made.json()["generation"] == 1 and made.json()["state"] == "signing"
        http.post("/api/v1/products/sensor/licence-signers/rotate")
        listed = http.get("/api/v1/products/sensor/licence-signers").json()
        assert [(s["generation"], s["state"]) for s in listed] == [(1, "retired"), (2, "signing")]
        asked = http.post("/api/v1/products/sensor/licence-signers/1/revoke", json={"note": "leaked"})
        assert asked.status_code == 202 and asked.json()["state"] == "pending"
        bad = http.post("/api/v1/products/sensor/licence-signers/9/revoke", json={"note": "x"})
        assert bad.status_code == 404 and bad.json()["error"]["code"] == "licence_signer_not_found"
        none = http.post("/api/v1/products/nothing/licence-signers/rotate")
        assert none.status_code == 404
