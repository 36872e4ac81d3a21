"""A re-enrolled unit's old certificate is revoked as superseded (RFC 5280 CRLReason 4), in the same
transaction as the new one: OCSP says so, the issuing CA's next CRL lists it, the new certificate is good,
and the old one neither renews nor passes as the unit's. On both database engines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
from cryptography import x509
from sqlalchemy import select

from fabguard.api.server import ServerThread, publication_config
from fabguard.service.authority import revocation
from fabguard.store.models import Event
from tests.api.test_est import curl_est, est_request, openssl_csr, pkcs7_certs
from tests.support import World, tested_device


def openssl_ocsp(world: World, url: str, cert: Path) -> str:
    result = subprocess.run(
        [
            "openssl", "ocsp", "-issuer", str(world.inst.cas.cert_path("issuing")), "-cert", str(cert),
            "-url", f"{url}/ocsp", "-CAfile", str(world.root_ca), "-resp_text", "-no_nonce",
        ],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr
    return result.stdout


def test_reenrolment_revokes_the_old_certificate_as_superseded(any_world: World, tmp_path: Path) -> None:
    world = any_world
    order = world.order(quota=1, order_id="po-est")
    fx = world.fixture("fx-1")
    tested_device(fx, "SN-SUP-1")
    csr, key = openssl_csr(tmp_path, "SN-SUP-1")
    status, payload = curl_est(world, "fx-1", f"/{order}/simpleenroll", csr)
    assert status == 200, payload
    old_pem, new_pem = tmp_path / "old.pem", tmp_path / "new.pem"
    old_pem.write_text(pkcs7_certs(payload))
    old = x509.load_pem_x509_certificate(old_pem.read_bytes())
    revocation.refresh_crl(world.inst, "issuing")  # a CRL published before the re-enrolment
    reenrolled_at = world.inst.clock()

    (tmp_path / "rekey").mkdir()
    new_csr, new_key = openssl_csr(tmp_path / "rekey", "SN-SUP-1")
    status, payload = est_request(world, "/simplereenroll", new_csr, cert=old_pem, key=key)
    assert status == 200, payload
    new_pem.write_text(pkcs7_certs(payload))
    new = x509.load_pem_x509_certificate(new_pem.read_bytes())

    with ServerThread(world.inst, config=publication_config) as http:
        said = openssl_ocsp(world, http.url, old_pem)
        assert f"{old_pem}: revoked" in said, said
        assert "Reason: superseded" in said
        assert f"Revocation Time: {reenrolled_at.strftime('%b %e')}" in said
        said = openssl_ocsp(world, http.url, new_pem)
        assert f"{new_pem}: good" in said, said

        # The CRL fetched now (re-signed by the re-enrolment, as after a revocation) lists the old serial.
        der = httpx.get(f"{http.url}/crl/issuing.crl").content
    crl = x509.load_der_x509_crl(der)
    entry = crl.get_revoked_certificate_by_serial_number(old.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    assert abs((entry.revocation_date_utc - reenrolled_at).total_seconds()) < 5
    assert crl.get_revoked_certificate_by_serial_number(new.serial_number) is None
    crl_file = tmp_path / "issuing.crl"
    crl_file.write_bytes(der)
    text = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(crl_file), "-noout", "-text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    hexed = format(old.serial_number, "X")
    assert f"Serial Number: {hexed.zfill(len(hexed) + len(hexed) % 2)}" in text, text
    assert "Superseded" in text

    # The old certificate renews nothing any more.
    status, payload = est_request(world, "/simplereenroll", new_csr, cert=old_pem, key=key)
    assert status == 401 and json.loads(payload)["error"]["code"] == "unknown_device"
    del new_key

    with world.inst.db.read() as s:
        detail = s.execute(
            select(Event.detail).where(Event.kind == "unit.reenrolled", Event.serial == "SN-SUP-1")
        ).scalar_one()
    recorded = json.loads(detail) if isinstance(detail, str) else detail
    assert recorded["old_cert_serial"] == format(old.serial_number, "x")
    assert recorded["old_cert_revoked"] == "superseded"
