"""EST re-enrolment of a Matter unit with stock tools: the unit's DAC (under its PAI, under the vendor's PAA)
is the client certificate, so the handshake must accept a chain that ends at a PAA."""

from __future__ import annotations

import json
from pathlib import Path

from fabguard.domain.values import CaName, ProductId, SiteId
from fabguard.service.approvals import requests
from fabguard.service.authority.ca_acts import MatterPaiCreation
from fabguard.service.catalog import orders, product_catalog
from tests.api.test_est import curl_est, est_request, openssl_csr, pkcs7_certs, sh
from tests.support import REQUESTER, World, second_person_approves, tested_device


def test_a_matter_unit_renews_its_dac_over_est_with_its_dac(any_world: World, tmp_path: Path) -> None:
    world = any_world
    product_catalog.create_product(world.inst, product_id=ProductId("bulb"), name="Smart Bulb", actor="t")
    asked = requests.request(
        world.inst, CaName("pai-bulb").value, MatterPaiCreation("bulb", 0xFFF1, 0x8000), by=REQUESTER
    )
    second_person_approves(world.inst, asked)
    order = orders.create_order(world.inst, product_id=ProductId("bulb"), site_id=SiteId("cm-a"), quota=1, actor="t").id
    fx = world.fixture("fx-1")
    tested_device(fx, "SN-M1")
    csr, key = openssl_csr(tmp_path, "SN-M1")
    status, payload = curl_est(world, "fx-1", f"/{order}/simpleenroll", csr)
    assert status == 200, payload
    (tmp_path / "current.pem").write_text(pkcs7_certs(payload))
    (tmp_path / "rekey").mkdir()
    new_csr, new_key = openssl_csr(tmp_path / "rekey", "SN-M1")

    status, payload = est_request(world, "/simplereenroll", new_csr, cert=tmp_path / "current.pem", key=key)

    assert status == 200, payload
    (tmp_path / "renewed.pem").write_text(pkcs7_certs(payload))
    assert (
        sh("openssl", "x509", "-noout", "-pubkey", "-in", tmp_path / "renewed.pem").stdout
        == sh("openssl", "pkey", "-pubout", "-in", new_key).stdout
    )
    subject = sh("openssl", "x509", "-noout", "-subject", "-in", tmp_path / "renewed.pem").stdout.decode()
    assert "FFF1" in subject.upper() and "8000" in subject
    # The superseded DAC renews nothing more.
    status, payload = est_request(world, "/simplereenroll", new_csr, cert=tmp_path / "current.pem", key=key)
    assert status == 401 and json.loads(payload)["error"]["code"] == "unknown_device"
