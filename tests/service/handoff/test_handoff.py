"""Hand-off to device clouds on a real instance: the verification certificate passes OpenSSL under the CA
chain (file and HSM keys), is recorded in the ledger, is refused as a device certificate; the manifest
is signed and tampering shows; bad requests are refused, recorded and change nothing else."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import CaName, ProductId
from fabguard.ledger.verify import AuditFailure, verify_export, verify_report
from fabguard.pki.handoff import RegistrationCode, VerificationCode
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities, revocation
from fabguard.service.authority.ca_acts import CaCreation, CaRevocation, MatterPaiCreation
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.handoff import clouds
from fabguard.service.ledger import merkle_log, reports
from fabguard.service.provisioning.reenrolment import reenroll_unit
from fabguard.store.models import Event
from tests.support import REQUESTER, World, second_person_approves, tested_device

AWS_CODE = RegistrationCode("5e" * 32)
DPS_CODE = VerificationCode("1B1F84DE79B9BD5F16D71E92709917C2A1CA19D5A156CB9F")
ROLE = "arn:aws:iam::123456789012:role/JITPRole"


@pytest.fixture
def fleet(any_world: World) -> tuple[World, str]:
    """An order with three provisioned units, one of them revoked."""
    world = any_world
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    for serial in ("SN-H1", "SN-H2", "SN-H3"):
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())
    revocation.revoke_unit(world.inst, "SN-H3", reason_code="key_compromise", note="test", actor="test")
    return world, order


def _write(files: dict[str, str], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    return out


def _openssl_verify(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["openssl", "verify", *extra, "-CAfile", str(out / "chain.pem"), str(out / "verification.pem")]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def _cn(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _events(inst: Instance, kind: str) -> list[Event]:
    with inst.db.read() as s:
        return list(s.execute(select(Event).where(Event.kind == kind).order_by(Event.seq)).scalars())


def test_aws_bundle_verifies_with_openssl_names_the_code_and_is_recorded(ca_world: World, tmp_path: Path) -> None:
    """On encrypted-file and on SoftHSM2 (PKCS#11) CA keys alike."""
    world = ca_world
    bundle = clouds.aws_bundle(world.inst, "issuing", AWS_CODE, role_arn=ROLE, actor="alice")
    out = _write(bundle.files, tmp_path / "aws")
    assert _openssl_verify(out).returncode == 0, _openssl_verify(out).stderr
    assert _cn(bundle.files["verification.pem"]) == AWS_CODE.value
    refused = _openssl_verify(out, "-purpose", "sslclient")  # not usable as a device (TLS client) certificate
    assert refused.returncode != 0 and "purpose" in refused.stderr
    config = json.loads(bundle.files["registration-config.json"])
    assert config["roleArn"] == ROLE and json.loads(config["templateBody"]) == json.loads(
        bundle.files["jitp-template.json"]
    )
    [event] = _events(world.inst, "handoff.aws")
    detail = json.loads(event.detail)
    cert = x509.load_pem_x509_certificate(bundle.files["verification.pem"].encode())
    assert event.actor == "alice" and detail["ca"] == "issuing" and detail["code"] == AWS_CODE.value
    assert detail["verification_cert_serial"] == format(cert.serial_number, "x") == bundle.verification_serial
    assert detail["verification_cert_sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    if world.inst.keys.backend == "pkcs11":
        assert not world.inst.keys.path("issuing").exists()  # signed in the token: no key file


def test_aws_device_manifest_lists_the_cas_unrevoked_units_in_bulk_registration_form(
    fleet: tuple[World, str],
) -> None:
    world, order = fleet
    bundle = clouds.aws_bundle(world.inst, "issuing", AWS_CODE, role_arn=None, order_id=order, actor="alice")
    assert "registration-config.json" not in bundle.files and "--role-arn" in bundle.files["README.txt"]
    lines = [json.loads(line) for line in bundle.files["bulk-registration.jsonl"].splitlines()]
    assert [line["ThingName"] for line in lines] == ["SN-H1", "SN-H2"]  # SN-H3 is revoked
    params = set(json.loads(bundle.files["bulk-template.json"])["Parameters"])
    for line in lines:
        assert set(line) == params and all(isinstance(v, str) for v in line.values())
        device = x509.load_pem_x509_certificate(line["CertificatePem"].encode())
        device.verify_directly_issued_by(x509.load_pem_x509_certificate(line["CACertificatePem"].encode()))
        assert device.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == line["SerialNumber"]
    _approved(
        world.inst,
        requests.request(world.inst, CaName("issuing-2").value, CaCreation(None, None), by=REQUESTER),
    )
    with pytest.raises(FabGuardError) as exc:  # that order's units chain to "issuing", not to this CA
        clouds.aws_bundle(world.inst, "issuing-2", AWS_CODE, role_arn=None, order_id=order, actor="alice")
    assert exc.value.code == "order_not_under_ca" and exc.value.status == 409


def test_azure_bundle_is_a_proof_of_possession_and_an_enrolment_group(any_instance: Instance, tmp_path: Path) -> None:
    inst = any_instance
    bundle = clouds.azure_bundle(
        inst, "issuing", DPS_CODE, enrollment_group_id="acme-fleet", certificate_name="acme-issuing", actor="bob"
    )
    out = _write(bundle.files, tmp_path / "azure")
    assert _openssl_verify(out).returncode == 0
    assert _cn(bundle.files["verification.pem"]) == DPS_CODE.value
    group = json.loads(bundle.files["enrollment-group.json"])
    assert group["enrollmentGroupId"] == "acme-fleet"
    assert group["attestation"] == {"type": "x509", "x509": {"caReferences": {"primary": "acme-issuing"}}}
    assert "acme-issuing" in bundle.files["README.txt"]
    assert [json.loads(e.detail)["code"] for e in _events(inst, "handoff.azure")] == [DPS_CODE.value]


def test_the_verification_certificate_is_refused_as_a_device_certificate(any_instance: Instance) -> None:
    inst = any_instance
    bundle = clouds.aws_bundle(inst, "issuing", AWS_CODE, role_arn=None, actor="alice")
    der = x509.load_pem_x509_certificate(bundle.files["verification.pem"].encode()).public_bytes(
        serialization.Encoding.DER
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-H1")]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    with pytest.raises(FabGuardError) as exc:  # EST re-enrolment by that certificate
        reenroll_unit(inst, der, csr.public_bytes(serialization.Encoding.PEM))
    assert exc.value.code == "unknown_device"


def _count(inst: Instance) -> int:
    with inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(Event)).scalar_one())


REFUSED_CAS = {
    "no-such-ca": "ca_not_found",
    "root": "ca_not_issuing",
    "station": "ca_not_issuing",
    "issuing-cm-x": "ca_revoked",
    "issuing-2027": "ca_not_active",  # pending: its offline root has not signed it yet
}


def test_a_ca_that_cannot_be_handed_off_is_refused_and_recorded(any_instance: Instance) -> None:
    inst = any_instance
    _approved(inst, requests.request(inst, CaName("issuing-cm-x").value, CaCreation(None, None), by=REQUESTER))
    _approved(
        inst,
        requests.request(inst, "issuing-cm-x", CaRevocation("ca_compromise", "test"), by=REQUESTER),
    )
    authorities.issuing_csr(inst, CaName("issuing-2027"), site_id=None, product_id=None, actor="t")
    before = _count(inst)
    for ca, code in REFUSED_CAS.items():
        for call in (
            lambda ca=ca: clouds.aws_bundle(inst, ca, AWS_CODE, role_arn=None, actor="eve"),
            lambda ca=ca: clouds.azure_bundle(inst, ca, DPS_CODE, actor="eve"),
        ):
            with pytest.raises(FabGuardError) as exc:
                call()
            assert exc.value.code == code and 400 <= exc.value.status < 500, ca
    refused = _events(inst, "handoff.refused")
    assert _count(inst) == before + 2 * len(REFUSED_CAS)  # the refusals, and nothing else
    assert [e.code for e in refused] == [c for c in REFUSED_CAS.values() for _ in (1, 2)]
    assert {json.loads(e.detail)["cloud"] for e in refused} == {"aws", "azure"} and refused[0].actor == "eve"
    assert not _events(inst, "handoff.aws") and not _events(inst, "handoff.azure")


def test_an_unknown_order_is_refused_for_the_aws_manifest_and_the_device_manifest(any_instance: Instance) -> None:
    with pytest.raises(FabGuardError) as exc:
        clouds.aws_bundle(any_instance, "issuing", AWS_CODE, role_arn=None, order_id="po-none", actor="a")
    assert exc.value.code == "order_not_found"
    assert not _events(any_instance, "handoff.aws") and _events(any_instance, "handoff.refused")
    with pytest.raises(FabGuardError) as exc:
        clouds.order_manifest(any_instance, "po-none", actor="a")
    assert exc.value.code == "order_not_found" and not _events(any_instance, "handoff.manifest")


def test_manifest_lists_every_unit_and_its_signatures_verify_offline(fleet: tuple[World, str], tmp_path: Path) -> None:
    world, order = fleet
    m = clouds.order_manifest(world.inst, order, actor="auditor")
    devices = {d["serial"]: d for d in m.body["devices"]}
    assert set(devices) == {"SN-H1", "SN-H2", "SN-H3"} and m.body["count"] == 3
    assert devices["SN-H3"]["status"] == "revoked" and devices["SN-H1"]["status"] == "active"
    for d in devices.values():
        cert = x509.load_pem_x509_certificate(d["certificate_pem"].encode())
        assert cert.fingerprint(hashes.SHA256()).hex() == d["certificate_sha256"]
        assert cert.public_key() == serialization.load_pem_public_key(d["public_key_pem"].encode())
        assert (d["order_id"], d["product_id"], d["site_id"]) == (order, "sensor", "cm-a")
    key = merkle_log.public_verifier_key(world.inst)
    (tmp_path / "manifest.json").write_text(clouds.manifest_json(m))
    text = clouds.manifest_csv(m)
    (tmp_path / "manifest.csv").write_text(text)
    (tmp_path / "manifest.csv.sig").write_text(reports.sign_bytes(world.inst, text.encode()))
    assert verify_report(tmp_path / "manifest.json", key) == "manifest.json"
    assert verify_report(tmp_path / "manifest.csv", key) == "manifest.csv"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["serial"] for r in rows] == sorted(devices)
    first = x509.load_der_x509_certificate(base64.b64decode(rows[0]["certificate_der_base64"]))
    assert first.fingerprint(hashes.SHA256()).hex() == rows[0]["certificate_sha256"]
    [event] = _events(world.inst, "handoff.manifest")
    assert json.loads(event.detail)["devices"] == 3 and event.order_id == order

    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["manifest"]["devices"][2]["status"] = "active"  # hide a revocation
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(AuditFailure):
        verify_report(tmp_path / "manifest.json", key)
    (tmp_path / "manifest.csv").write_text(text.replace("revoked", "active"))
    with pytest.raises(AuditFailure):
        verify_report(tmp_path / "manifest.csv", key)


def test_concurrent_hand_offs_are_each_recorded_once_and_the_ledger_verifies(
    any_instance: Instance, tmp_path: Path
) -> None:
    inst = any_instance
    with ThreadPoolExecutor(max_workers=6) as pool:
        bundles = list(
            pool.map(
                lambda i: clouds.aws_bundle(
                    inst, "issuing", RegistrationCode(f"{i:02x}" * 32), role_arn=None, actor="a"
                ),
                range(12),
            )
        )
    events = _events(inst, "handoff.aws")
    assert sorted(e.seq for e in events) == sorted(b.event_seq for b in bundles)
    assert len({b.verification_serial for b in bundles}) == 12
    assert {json.loads(e.detail)["verification_cert_serial"] for e in events} == {
        b.verification_serial for b in bundles
    }
    merkle_log.export(inst, tmp_path / "export")
    assert verify_export(tmp_path / "export").entries == _count(inst)


def test_a_verification_certificate_whose_record_fails_is_never_handed_out(
    any_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = any_instance
    before = _count(inst)

    def broken(*args: object, **kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(clouds, "append_event", broken)
    with pytest.raises(OSError):
        clouds.azure_bundle(inst, "issuing", DPS_CODE, actor="a")
    assert _count(inst) == before and not _events(inst, "handoff.azure")


def test_a_matter_pai_hands_off_with_a_template_that_names_things_by_the_dac_cn(
    instance: Instance, tmp_path: Path
) -> None:
    product_catalog.create_product(instance, product_id=ProductId("bulb"), name="Bulb", actor="t")
    _approved(
        instance,
        requests.request(instance, CaName("pai-bulb").value, MatterPaiCreation("bulb", 0xFFF1, 0x8000), by=REQUESTER),
    )
    bundle = clouds.aws_bundle(instance, "pai-bulb", AWS_CODE, role_arn=ROLE, actor="t")
    template = json.loads(json.loads(bundle.files["registration-config.json"])["templateBody"])
    assert template["Resources"]["thing"]["Properties"]["ThingName"] == {"Ref": "AWS::IoT::Certificate::CommonName"}
    out = _write(bundle.files, tmp_path / "aws")
    assert _openssl_verify(out).returncode == 0  # under the PAI and its PAA


def _approved(inst: Instance, pending: requests.ApprovalView) -> None:
    """A CA act under dual control, carried out: a second person approves it."""
    second_person_approves(inst, pending)
