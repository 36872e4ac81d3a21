"""A unit a site agent issued offline and synced home is one of ours everywhere a unit appears: genuine in
a field check (online and from a ledger export) with no clone alert, in the device-cloud hand-off with the
agent CA's chain, and in an audited export. A certificate the agent CA signed off the log stays not issued.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from fabguard.api.server import ServerThread
from fabguard.domain.errors import Refusal
from fabguard.domain.values import Serial
from fabguard.firmware.sbom import validate_sbom
from fabguard.fixture.device import SimulatedDevice
from fabguard.ledger.pack import verify_pack
from fabguard.ledger.verify import verify_export
from fabguard.pki import profiles
from fabguard.pki.field_offline import load_export, verify_offline
from fabguard.pki.handoff import RegistrationCode, VerificationCode
from fabguard.service.agent import sync
from fabguard.service.agent.site_agent import sync_package
from fabguard.service.analytics import dashboard_queries
from fabguard.service.authority import authorities
from fabguard.service.compliance import evidence_pack
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.service.field import genuineness
from fabguard.service.handoff import clouds
from fabguard.service.ledger import merkle_log, reports
from fabguard.service.provisioning import reenrolment
from fabguard.store.models import Unit
from tests.agent.conftest import Site, agent_fixture
from tests.support import tested_device

Agent = tuple[Instance, ServerThread]


def _issued_offline_and_synced(site: Site, agent: Agent, serial: str) -> SimulatedDevice:
    inst, server = agent
    with agent_fixture(site, server) as client:
        device = tested_device(client, serial)
        device.certificate_pem = client.provision(site.order_id, serial, device.csr_pem()).certificate_pem
    summary = sync.sync_lease(site.world.inst, sync_package(inst, site.home), actor="test")
    assert summary["units"] == 1 and summary["clones"] == []
    return device


def _check(inst: Instance, device: SimulatedDevice, source: str) -> dict[str, object]:
    origin = genuineness.parse_origin(inst, actor="support-desk", source=source, client="127.0.0.1")
    body = device.field_answer(genuineness.issue_challenge(inst, actor="support-desk")["nonce"])
    answer = genuineness.parse_answer(
        inst, origin, nonce=body["nonce"], signature=body["signature"], chain_pem=body["chain"]
    )
    return genuineness.verify(inst, answer, origin)


def _agent_ca(site: Site) -> str:
    terms = site.lease["lease"]
    assert isinstance(terms, dict)
    return f"agent-{str(terms['lease_id']).removeprefix('lease-')}"


def test_an_agent_unit_is_genuine_in_the_field_and_raises_no_clone_alert(any_site: Site, any_agent: Agent) -> None:
    site, central = any_site, any_site.world.inst
    device = _issued_offline_and_synced(site, any_agent, "SN-G1")
    verdict = _check(central, device, "store-berlin")
    assert (verdict["genuine"], verdict["reason"], verdict["clone"]) == (True, None, None), verdict
    assert verdict["serial"] == "SN-G1" and verdict["order_id"] == site.order_id
    assert not [a for a in dashboard_queries.alerts(central) if a.kind == "field_clone"]
    # What the agent CA signs off its log never came home: still not issued, and a clone alert.
    agent_inst, _ = any_agent
    key = ec.generate_private_key(ec.SECP256R1())
    rogue = profiles.idevid_certificate(
        agent_inst.cas.issuer("issuing"),
        key.public_key(),
        Serial("SN-OFFLOG"),
        agent_inst.config.organization,
        "sensor",
        agent_inst.clock(),
    )
    off_log = SimulatedDevice("SN-OFFLOG", key, rogue.public_bytes(serialization.Encoding.PEM).decode())
    verdict = _check(central, off_log, "store-paris")
    assert (verdict["genuine"], verdict["reason"], verdict["clone"]) == (False, "serial_unknown", "not_issued")


def test_the_cas_that_may_have_issued_genuine_units_are_the_issuing_and_agent_cas(site: Site) -> None:
    with site.world.inst.db.read() as s:
        names = {row.name: row.role for row in authorities.device_issuers(s)}
    assert names == {"issuing": "issuing", _agent_ca(site): "agent"}


def test_an_agent_unit_is_genuine_offline_from_an_audited_export(site: Site, agent: Agent, tmp_path: Path) -> None:
    central = site.world.inst
    device = _issued_offline_and_synced(site, agent, "SN-G2")
    merkle_log.export(central, tmp_path / "export")
    report = verify_export(tmp_path / "export", verifier=merkle_log.public_verifier_key(central))
    assert report.certificates_checked == 1
    facts = load_export(tmp_path / "export")
    nonce = bytes(range(32))
    signature = base64.b64decode(device.answer_challenge(nonce.hex()))
    leaf = x509.load_pem_x509_certificate(str(device.certificate_pem).encode())
    verdict = verify_offline(facts, leaf, nonce, signature, central.clock())
    assert (verdict.genuine, verdict.reason) == (True, None)


def _openssl_verifies(tmp: Path, root_pem: str, chain_pem: str, leaf_pem: str) -> None:
    (tmp / "root.pem").write_text(root_pem)
    (tmp / "chain.pem").write_text(chain_pem)
    (tmp / "leaf.pem").write_text(leaf_pem)
    check = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tmp / "root.pem"),
            "-untrusted",
            str(tmp / "chain.pem"),
            str(tmp / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_aws_hand_off_registers_the_agent_ca_and_bulk_registers_its_synced_units(
    site: Site, agent: Agent, tmp_path: Path
) -> None:
    central = site.world.inst
    device = _issued_offline_and_synced(site, agent, "SN-G3")
    name = _agent_ca(site)
    bundle = clouds.aws_bundle(
        central, "issuing", RegistrationCode("ab" * 32), role_arn=None, order_id=site.order_id, actor="test"
    )
    lines = [json.loads(line) for line in bundle.files["bulk-registration.jsonl"].splitlines()]
    mine = [line for line in lines if line["SerialNumber"] == "SN-G3"]
    agent_pem = central.cas.certificate_pem(name)
    assert len(mine) == 1 and mine[0]["CACertificatePem"] == agent_pem
    assert bundle.files[f"{name}.pem"] == agent_pem
    chain = bundle.files[f"{name}-chain.pem"]
    _openssl_verifies(tmp_path, central.cas.certificate_pem("root"), chain, str(device.certificate_pem))
    readme = bundle.files["README.txt"]
    assert f"file://{name}.pem" in readme and "SNI_ONLY" in readme


def test_the_azure_hand_off_carries_an_enrolment_group_for_the_agent_ca(site: Site, agent: Agent) -> None:
    central = site.world.inst
    _issued_offline_and_synced(site, agent, "SN-G4")
    name = _agent_ca(site)
    bundle = clouds.azure_bundle(central, "issuing", VerificationCode("A1B2C3"), actor="test")
    assert bundle.files[f"{name}.pem"] == central.cas.certificate_pem(name)
    group = json.loads(bundle.files[f"{name}-enrollment-group.json"])
    assert group["attestation"]["x509"]["caReferences"]["primary"] == name
    assert f"--certificate-name {name}" in bundle.files["README.txt"]


def test_an_agent_unit_is_in_the_cra_pack_which_says_where_the_agent_key_is(
    site: Site, agent: Agent, tmp_path: Path
) -> None:
    central = site.world.inst
    _issued_offline_and_synced(site, agent, "SN-G5")
    evidence_pack.export_pack(central, tmp_path / "pack", allow_incomplete=True)
    report = verify_pack(tmp_path / "pack", verifier=merkle_log.public_verifier_key(central), sbom_check=validate_sbom)
    assert report.certificates == 1
    rows = json.loads((tmp_path / "pack/certificates/inventory.json").read_text())
    assert [(r["serial"], r["issuing_ca"], r["status"]) for r in rows] == [("SN-G5", _agent_ca(site), "active")]
    cas = {c["name"]: c for c in json.loads((tmp_path / "pack/ca/hierarchy.json").read_text())}
    assert cas[_agent_ca(site)]["key_protection"]["kind"] == "elsewhere"


def test_an_agent_unit_that_re_enrols_at_the_central_server_is_refused_cleanly(site: Site, agent: Agent) -> None:
    """EST re-enrolment at the central server of a synced agent unit: the agent CA's key is the agent's, so
    the server cannot sign for it. A refusal with its code, recorded as an event, the unit unchanged (it was
    a 500 ``configuration_error``, "unknown key reference 'external:agent-...'")."""
    central = site.world.inst
    device = _issued_offline_and_synced(site, agent, "SN-G3")
    leaf = x509.load_pem_x509_certificate(str(device.certificate_pem).encode())
    with pytest.raises(Refusal) as refused:
        reenrolment.reenroll_unit(central, leaf.public_bytes(serialization.Encoding.DER), device.csr_pem().encode())
    assert refused.value.code == "issuing_ca_revoked" and "site agent" in refused.value.message
    refusals = events.list_events(central, kind="reenroll.refused")
    assert [e["code"] for e in refusals] == ["issuing_ca_revoked"]
    with central.db.read() as s:
        assert s.execute(select(Unit.certificate_pem).where(Unit.serial == "SN-G3")).scalar_one() == str(
            device.certificate_pem
        )


def test_an_agent_units_passing_test_counts_in_the_reconciliation_report(any_site: Site, any_agent: Agent) -> None:
    """The agent's test gate passed the unit, and its log came home verified: the report counts that test
    (folded as ``agent.test.recorded``) and does not call the unit provisioned without a passing test."""
    _issued_offline_and_synced(any_site, any_agent, "SN-REC1")
    report = reports.reconciliation_report(any_site.world.inst, order_id=any_site.order_id, sign_checkpoint=True)
    figures = report.body["figures"]
    assert figures["provisioned"] == 1 and figures["exceptions"]["provisioned_without_a_passing_test"] == [], figures
    assert figures["tested"]["final_pass"] == 1, figures
