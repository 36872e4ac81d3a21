"""A Matter product: its orders are bound to a PAI, its units get DACs that follow the Matter rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.values import CaName, ProductId, SiteId
from fabguard.pki import matter
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities
from fabguard.service.authority.ca_acts import CaRevocation, MatterPaiCreation
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.provisioning import reenrolment
from tests.support import REQUESTER, World, second_person_approves, tested_device


@pytest.fixture
def world(ca_world: World) -> World:
    return ca_world


def _pai_bulb(world: World) -> None:
    """A PAI for the bulb, asked for and approved by a second person."""
    asked = requests.request(
        world.inst, CaName("pai-bulb").value, MatterPaiCreation("bulb", 0xFFF1, 0x8000), by=REQUESTER
    )
    second_person_approves(world.inst, asked)


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)


def test_matter_product_units_get_dacs_that_chain_to_the_paa(world: World, tmp_path: Path) -> None:
    product_catalog.create_product(world.inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="t")
    _pai_bulb(world)
    order = orders.create_order(world.inst, product_id=ProductId("bulb"), site_id=SiteId("cm-a"), quota=2, actor="t").id
    idevid_order = world.order(quota=2)  # the other product keeps its IEEE 802.1AR profile
    assert orders.get_order(world.inst, order).issuing_ca == "pai-bulb"
    fx = world.fixture("fx-1")

    issued = fx.provision(order, "SN-M1", tested_device(fx, "SN-M1").csr_pem())

    dac = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    pai, paa = (x509.load_pem_x509_certificate(p.encode()) for p in issued.chain_pem)
    matter.check_attestation_chain(dac, pai, paa)
    vid, pid = matter.subject_ids(dac.subject)
    assert (str(vid), str(pid)) == ("FFF1", "8000")
    for name, cert in (("dac", dac), ("pai", pai), ("paa", paa)):
        (tmp_path / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ok = run(
        "openssl", "verify", "-CAfile", tmp_path / "paa.pem", "-untrusted", tmp_path / "pai.pem", tmp_path / "dac.pem"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lint = run(Path(sys.executable).parent / "lint_pkix_cert", "lint", "-s", "ERROR", tmp_path / "dac.pem")
    assert lint.returncode == 0, lint.stdout

    other = x509.load_pem_x509_certificate(
        fx.provision(idevid_order, "SN-I1", tested_device(fx, "SN-I1").csr_pem()).certificate_pem.encode()
    )
    assert matter.subject_ids(other.subject) == (None, None)


def test_reenrolled_matter_unit_gets_a_new_dac_from_its_orders_pai(world: World) -> None:
    product_catalog.create_product(world.inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="t")
    _pai_bulb(world)
    order = orders.create_order(world.inst, product_id=ProductId("bulb"), site_id=SiteId("cm-a"), quota=1, actor="t").id
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN-M1")
    first = x509.load_pem_x509_certificate(fx.provision(order, "SN-M1", device.csr_pem()).certificate_pem.encode())

    renewed = reenrolment.reenroll_unit(
        world.inst, first.public_bytes(serialization.Encoding.DER), device.csr_pem().encode()
    )

    dac = x509.load_pem_x509_certificate(renewed.certificate_pem.encode())
    pai, paa = (x509.load_pem_x509_certificate(p.encode()) for p in renewed.chain_pem)
    matter.check_attestation_chain(dac, pai, paa)
    vid, pid = matter.subject_ids(dac.subject)
    assert (str(vid), str(pid)) == ("FFF1", "8000")
    assert dac.issuer == first.issuer == pai.subject
    assert dac.serial_number != first.serial_number
    assert orders.get_order(world.inst, order).used == 1


def test_revoked_pai_is_on_its_paas_crl_not_the_roots(world: World) -> None:
    product_catalog.create_product(world.inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="t")
    _pai_bulb(world)
    second_person_approves(
        world.inst,
        requests.request(world.inst, "pai-bulb", CaRevocation("ca_compromise", "leak"), by=REQUESTER),
    )
    from fabguard.service.authority import revocation

    pai_serial = int(str(authorities.get_ca(world.inst, "pai-bulb").cert_serial), 16)
    paa_crl = x509.load_der_x509_crl(revocation.refresh_crl(world.inst, "matter-paa-fff1"))
    root_crl = x509.load_der_x509_crl(revocation.refresh_crl(world.inst, "root"))
    assert paa_crl.get_revoked_certificate_by_serial_number(pai_serial) is not None
    assert root_crl.get_revoked_certificate_by_serial_number(pai_serial) is None


def test_bad_matter_identifiers_are_refused(world: World) -> None:
    product_catalog.create_product(world.inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="t")
    with world.admin() as http:
        r = http.post("/api/v1/cas/matter-pai", json={"name": "pai-x", "product_id": "bulb", "vid": 0, "pid": 1})
        assert r.status_code == 422 and r.json()["error"]["code"] == "matter_attestation_invalid"
        r = http.post("/api/v1/cas/matter-pai", json={"name": "pai-x", "product_id": "nope", "vid": 0xFFF1, "pid": 1})
        assert r.status_code == 404
    assert "pai-x" not in {c.name for c in authorities.list_cas(world.inst)}
    assert requests.list_approvals(world.inst) == []
