"""The CA hierarchy: per-site issuing CAs contain a breach, rotation keeps old certificates valid,
an offline root signs a CSR that is imported, and each step is checked with openssl. Each change
but the CSR is two people's (tests/service/authority/test_ca_dual_control.py): here a second person approves."""

from __future__ import annotations

import ssl
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.domain.values import CaName
from fabguard.fixture.client import FabGuardClientError
from fabguard.ledger.verify import verify_export
from fabguard.pki import profiles
from fabguard.pki.keys import new_signing_key
from fabguard.service.access import tokens
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities
from fabguard.service.authority.ca_acts import CaCreation, CaImport, CaRevocation, CaRotation
from fabguard.service.catalog import orders
from fabguard.service.core import events
from fabguard.service.ledger import merkle_log
from tests.support import REQUESTER, World, second_person_approves, tested_device


@pytest.fixture
def world(ca_world: World) -> World:
    """Every test here runs with the CA keys in encrypted files and in SoftHSM2 (PKCS#11)."""
    return ca_world


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)


def pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def crl_pem(world: World, ca: str, path: Path) -> Path:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(world.root_ca))) as http:
        der = http.get(f"{world.url}/crl/{ca}.crl").content
    path.write_bytes(x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM))
    return path


def test_site_issuing_ca_signs_that_sites_orders_and_revoking_it_contains_the_breach(
    world: World, tmp_path: Path
) -> None:
    asked = requests.request(world.inst, CaName("issuing-cm-b").value, CaCreation("cm-b", None), by=REQUESTER)
    second_person_approves(world.inst, asked)
    order_a, order_b = world.order(quota=5, site="cm-a"), world.order(quota=5, site="cm-b")
    assert orders.get_order(world.inst, order_b).issuing_ca == "issuing-cm-b"
    assert orders.get_order(world.inst, order_a).issuing_ca == "issuing"
    fx_a, fx_b = world.fixture("fx-a", site="cm-a"), world.fixture("fx-b", site="cm-b")
    cert_b = x509.load_pem_x509_certificate(
        fx_b.provision(order_b, "SN-B1", tested_device(fx_b, "SN-B1").csr_pem()).certificate_pem.encode()
    )
    site_ca = world.inst.cas.issuer("issuing-cm-b").certificate
    assert cert_b.issuer == site_ca.subject
    ok = run(
        "openssl",
        "verify",
        "-CAfile",
        world.root_ca,
        "-untrusted",
        pem(site_ca, tmp_path / "ca.pem"),
        pem(cert_b, tmp_path / "b1.pem"),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lint = run(Path(sys.executable).parent / "lint_pkix_cert", "lint", "-s", "ERROR", tmp_path / "ca.pem")
    assert lint.returncode == 0, lint.stdout

    revoking = requests.request(
        world.inst, "issuing-cm-b", CaRevocation("ca_compromise", "CM B breached"), by=REQUESTER
    )
    second_person_approves(world.inst, revoking)

    root_crl = crl_pem(world, "root", tmp_path / "root.crl.pem")
    site_crl = crl_pem(world, "issuing-cm-b", tmp_path / "site.crl.pem")
    chain_check = run(
        "openssl",
        "verify",
        "-crl_check_all",
        "-CAfile",
        world.root_ca,
        "-untrusted",
        tmp_path / "ca.pem",
        "-CRLfile",
        root_crl,
        "-CRLfile",
        site_crl,
        tmp_path / "b1.pem",
    )
    assert chain_check.returncode != 0 and "revoked" in chain_check.stdout + chain_check.stderr
    with pytest.raises(FabGuardClientError) as refused:
        fx_b.provision(order_b, "SN-B2", tested_device(fx_b, "SN-B2").csr_pem())
    assert (refused.value.status, refused.value.code) == (409, "issuing_ca_revoked")
    assert orders.get_order(world.inst, order_b).used == 1
    # The other site's line goes on.
    fx_a.provision(order_a, "SN-A1", tested_device(fx_a, "SN-A1").csr_pem())
    assert orders.get_order(world.inst, order_a).used == 1


def test_rotation_moves_new_orders_and_keeps_old_certificates_valid(world: World, tmp_path: Path) -> None:
    old_order = world.order(quota=5)
    fx = world.fixture("fx-1")
    before = fx.provision(old_order, "SN-1", tested_device(fx, "SN-1").csr_pem())

    rotating = requests.request(world.inst, "issuing", CaRotation(CaName("issuing-2027").value), by=REQUESTER)
    second_person_approves(world.inst, rotating)

    new_order = world.order(quota=5)
    assert orders.get_order(world.inst, new_order).issuing_ca == "issuing-2027"
    after = fx.provision(new_order, "SN-2", tested_device(fx, "SN-2").csr_pem())
    still = fx.provision(old_order, "SN-3", tested_device(fx, "SN-3").csr_pem())
    old_ca = pem(world.inst.cas.issuer("issuing").certificate, tmp_path / "old.pem")
    new_ca = pem(world.inst.cas.issuer("issuing-2027").certificate, tmp_path / "new.pem")
    for cert, ca in ((before, old_ca), (still, old_ca), (after, new_ca)):
        (tmp_path / "leaf.pem").write_text(cert.certificate_pem)
        result = run("openssl", "verify", "-CAfile", world.root_ca, "-untrusted", ca, tmp_path / "leaf.pem")
        assert result.returncode == 0, result.stdout + result.stderr
    states = {c.name: c.state for c in authorities.list_cas(world.inst)}
    assert states["issuing"] == "retired" and states["issuing-2027"] == "active"
    kinds = [e["kind"] for e in events.list_events(world.inst, limit=1000) if e["kind"].startswith("ca.")]
    assert kinds == ["ca.created", "ca.rotated"]

    merkle_log.export(world.inst, tmp_path / "export")
    report = verify_export(tmp_path / "export", verifier=merkle_log.public_verifier_key(world.inst))
    assert report.certificates_checked == 3


def test_offline_root_signs_a_csr_that_is_imported(world: World, tmp_path: Path) -> None:
    csr = x509.load_pem_x509_csr(
        authorities.issuing_csr(
            world.inst, CaName("issuing-offline"), site_id="cm-a", product_id=None, actor="t"
        ).encode()
    )
    assert authorities.get_ca(world.inst, "issuing-offline").state == "pending"
    # On the offline machine: the root key (a file, or the HSM) signs the CSR.
    root = world.inst.cas.root_issuer()
    now = datetime.now(UTC)
    signed = profiles.intermediate_ca(root, csr.public_key(), "Acme Devices", "Offline-signed CA", now)  # type: ignore[arg-type]

    stranger = profiles.self_signed_root(new_signing_key(), "Evil", "Evil Root", now)
    forged = profiles.intermediate_ca(stranger, csr.public_key(), "Evil", "Forged", now)  # type: ignore[arg-type]
    # A certificate that does not fit is refused when the import is asked for, not when it is approved.
    with pytest.raises(InvalidRequest) as untrusted:
        requests.request(
            world.inst,
            "issuing-offline",
            CaImport.from_pem(forged.public_bytes(serialization.Encoding.PEM)),
            by=REQUESTER,
        )
    assert untrusted.value.code == "certificate_untrusted"
    other_key = profiles.intermediate_ca(root, new_signing_key().public_key(), "Acme Devices", "Other", now)
    with pytest.raises(InvalidRequest) as mismatch:
        requests.request(
            world.inst,
            "issuing-offline",
            CaImport.from_pem(other_key.public_bytes(serialization.Encoding.PEM)),
            by=REQUESTER,
        )
    assert mismatch.value.code == "certificate_key_mismatch"
    assert requests.list_approvals(world.inst) == []

    importing = requests.request(
        world.inst, "issuing-offline", CaImport.from_pem(signed.public_bytes(serialization.Encoding.PEM)), by=REQUESTER
    )
    assert authorities.get_ca(world.inst, "issuing-offline").state == "pending"
    second_person_approves(world.inst, importing)
    assert authorities.get_ca(world.inst, "issuing-offline").state == "active"
    with pytest.raises(Conflict):
        requests.request(
            world.inst,
            "issuing-offline",
            CaImport.from_pem(signed.public_bytes(serialization.Encoding.PEM)),
            by=REQUESTER,
        )
    order = world.order(quota=2)
    assert orders.get_order(world.inst, order).issuing_ca == "issuing-offline"
    fx = world.fixture("fx-1")
    cert = x509.load_pem_x509_certificate(
        fx.provision(order, "SN-OFF", tested_device(fx, "SN-OFF").csr_pem()).certificate_pem.encode()
    )
    cert.verify_directly_issued_by(signed)


def test_ca_api_and_cli_refuse_bad_requests_clearly(world: World) -> None:
    _, approver = tokens.create_token(world.inst, name="alex", role="approver", actor="test")
    with world.admin() as http:
        asked = http.post("/api/v1/cas", json={"name": "issuing-cm-a", "site_id": "cm-a"})
        assert asked.status_code == 202 and asked.json()["state"] == "pending", asked.text
        assert asked.json()["kind"] == "ca.create"
        made = http.post(
            f"/api/v1/approvals/{asked.json()['id']}/approve", headers={"Authorization": f"Bearer {approver}"}
        )
        assert made.status_code == 200 and made.json()["result"]["state"] == "active", made.text
        again = http.post("/api/v1/cas", json={"name": "issuing-cm-a"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "ca_exists"
        nowhere = http.post("/api/v1/cas", json={"name": "issuing-x", "site_id": "cm-zz"})
        assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "site_not_found"
        root = http.post("/api/v1/cas/root/revoke", json={"note": "x", "reason": "ca_compromise"})
        assert root.status_code == 422 and root.json()["error"]["code"] == "ca_is_root"
        listing = http.get("/api/v1/cas").json()
        assert {c["name"] for c in listing} == {"root", "issuing", "station", "issuing-cm-a"}
        assert all("key" in c and "-----" not in str(c) for c in listing)


def test_with_the_hsm_backend_no_ca_private_key_reaches_disk_or_the_database(world: World) -> None:
    if world.inst.config.key_backend != "pkcs11":
        pytest.skip("only meaningful for the PKCS#11 backend")
    order = world.order(quota=2)
    fx = world.fixture("fx-1")
    fx.provision(order, "SN-HSM", tested_device(fx, "SN-HSM").csr_pem())
    asked = requests.request(world.inst, CaName("issuing-hsm-2").value, CaCreation("cm-b", None), by=REQUESTER)
    second_person_approves(world.inst, asked)
    merkle_log.make_checkpoint(world.inst)
    assert sorted(p.name for p in (world.inst.home / "keys").iterdir()) == ["ledger.key.pem", "server.key.pem"]
    for path in world.inst.home.rglob("*"):
        if path.is_file() and path.parent.name != "keys":
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert all(c.key_ref.startswith("pkcs11:") for c in authorities.list_cas(world.inst) if c.role != "paa")
