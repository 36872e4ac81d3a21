"""The OCSP responder against ``openssl ocsp`` (good, revoked with reason and time, unknown; with and without
a nonce), over plain HTTP and HTTPS, by GET and POST; pkilint on its responder certificate and responses."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from fabguard.api.server import ServerThread, publication_config
from fabguard.service.authority import ocsp as ocsp_service
from fabguard.service.authority import revocation
from tests.support import World, tested_device


@dataclass
class Line:
    world: World
    http: str  # the plain-HTTP publication listener
    certs: dict[str, Path]  # PEM files: device certificates by serial, and "issuing", "root"


@pytest.fixture
def line(ca_world: World, tmp_path: Path) -> Iterator[Line]:
    """Two provisioned units, one revoked for key compromise; CA keys in files and in SoftHSM2."""
    world = ca_world
    order, fx = world.order(quota=5), world.fixture("fx-1")
    certs = {"issuing": world.inst.cas.cert_path("issuing"), "root": world.root_ca}
    for serial in ("SN-GOOD", "SN-BAD"):
        certs[serial] = tmp_path / f"{serial}.pem"
        certs[serial].write_text(fx.provision(order, serial, tested_device(fx, serial).csr_pem()).certificate_pem)
    revocation.revoke_unit(world.inst, "SN-BAD", reason_code="key_compromise", note="key leaked", actor="test")
    with ServerThread(world.inst, config=publication_config) as http:
        yield Line(world, http.url, certs)


def openssl_ocsp(line: Line, *target: object, url: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl", "ocsp", "-issuer", str(line.certs["issuing"]), *map(str, target),
            "-url", url or f"{line.http}/ocsp", "-CAfile", str(line.certs["root"]), "-resp_text",
        ],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_openssl_ocsp_says_good_and_verifies_the_delegated_responder(line: Line) -> None:
    result = openssl_ocsp(line, "-cert", line.certs["SN-GOOD"], "-no_nonce")
    assert result.returncode == 0, result.stderr
    assert f"{line.certs['SN-GOOD']}: good" in result.stdout
    assert "Response verify OK" in result.stderr
    assert "OCSP Signing" in result.stdout and "OCSP No Check" in result.stdout


def test_openssl_ocsp_says_revoked_with_reason_and_time(line: Line) -> None:
    result = openssl_ocsp(line, "-cert", line.certs["SN-BAD"], "-no_nonce")
    assert result.returncode == 0, result.stderr
    assert f"{line.certs['SN-BAD']}: revoked" in result.stdout
    assert "Reason: keyCompromise" in result.stdout
    revoked_at = line.world.inst.clock().strftime("%b %e")  # "Revocation Time: Dec  7 07:56:38 2026 GMT"
    assert f"Revocation Time: {revoked_at}" in result.stdout
    assert "Response verify OK" in result.stderr


def test_openssl_ocsp_says_unknown_for_a_serial_never_issued_under_the_ca(line: Line) -> None:
    result = openssl_ocsp(line, "-serial", "0x1234567890abcdef", "-no_nonce")
    assert result.returncode == 0, result.stderr
    assert "0x1234567890abcdef: unknown" in result.stdout
    assert "Response verify OK" in result.stderr


def test_openssl_ocsp_with_a_nonce_gets_it_back(line: Line) -> None:
    result = openssl_ocsp(line, "-cert", line.certs["SN-GOOD"], "-nonce")
    assert result.returncode == 0, result.stderr
    assert "OCSP Nonce" in result.stdout and "Response verify OK" in result.stderr
    assert "WARNING" not in result.stderr  # "no nonce in response" / "nonce verify error"


def test_the_https_app_answers_too(line: Line) -> None:
    """openssl verifies the server against the instance root; same answer as on plain HTTP."""
    result = openssl_ocsp(line, "-cert", line.certs["SN-BAD"], url=f"{line.world.url}/ocsp")
    assert result.returncode == 0, result.stderr
    assert "revoked" in result.stdout and "Response verify OK" in result.stderr


def request_for(line: Line, serial: str, *, nonce: bytes | None = None) -> bytes:
    cert = x509.load_pem_x509_certificate(line.certs[serial].read_bytes())
    issuer = x509.load_pem_x509_certificate(line.certs["issuing"].read_bytes())
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def get(line: Line, der: bytes) -> httpx.Response:
    return httpx.get(f"{line.http}/ocsp/{quote(base64.b64encode(der).decode(), safe='')}", timeout=30)


def test_get_answers_with_a_response_caches_may_keep_until_its_next_update(line: Line) -> None:
    answer = get(line, request_for(line, "SN-GOOD"))
    assert (answer.status_code, answer.headers["content-type"]) == (200, "application/ocsp-response")
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.hash_algorithm.name == "sha256"  # the CertID echoes the request's hash
    max_age = int(answer.headers["cache-control"].split(",")[0].removeprefix("max-age="))
    assert response.next_update_utc is not None
    assert 0 < max_age <= (response.next_update_utc - response.this_update_utc).total_seconds()
    assert get(line, request_for(line, "SN-GOOD")).content == answer.content  # the kept response, not re-signed


def test_a_revocation_is_answered_at_once_though_a_good_answer_was_kept(line: Line) -> None:
    assert ocsp.load_der_ocsp_response(get(line, request_for(line, "SN-GOOD")).content).certificate_status == (
        ocsp.OCSPCertStatus.GOOD
    )
    revocation.revoke_unit(line.world.inst, "SN-GOOD", reason_code="superseded", note="replaced", actor="test")
    response = ocsp.load_der_ocsp_response(get(line, request_for(line, "SN-GOOD")).content)
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason == x509.ReasonFlags.superseded


def test_post_echoes_the_nonce_and_is_not_kept_by_caches(line: Line) -> None:
    answer = httpx.post(
        f"{line.http}/ocsp",
        content=request_for(line, "SN-BAD", nonce=b"0123456789abcdef"),
        headers={"content-type": "application/ocsp-request"},
        timeout=30,
    )
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED


@pytest.mark.parametrize("body", [b"", b"not DER", b"\x30\x03\x02\x01\x01"])
def test_what_is_not_an_ocsp_request_is_answered_malformed_request(line: Line, body: bytes) -> None:
    answer = httpx.post(f"{line.http}/ocsp", content=body, timeout=30)
    assert (answer.status_code, answer.headers["content-type"]) == (400, "application/ocsp-response")
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    bad_get = httpx.get(f"{line.http}/ocsp/not*base64", timeout=30)
    assert ocsp.load_der_ocsp_response(bad_get.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_a_nonce_over_32_bytes_is_a_malformed_request(line: Line) -> None:
    answer = httpx.post(f"{line.http}/ocsp", content=request_for(line, "SN-GOOD", nonce=b"n" * 33), timeout=30)
    assert ocsp.load_der_ocsp_response(answer.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_the_root_answers_for_the_cas_it_certified(line: Line) -> None:
    root = str(line.certs["root"])
    for target, said in ((["-cert", str(line.certs["issuing"])], "good"), (["-serial", "7"], "unknown")):
        result = subprocess.run(
            ["openssl", "ocsp", "-issuer", root, *target, "-url", f"{line.http}/ocsp", "-CAfile", root],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert f": {said}" in result.stdout and "Response verify OK" in result.stderr, result.stdout + result.stderr


def test_a_certificate_of_a_ca_that_does_not_answer_here_is_unauthorized(line: Line) -> None:
    foreign = line.world.tmp / "foreign.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(line.world.tmp / "foreign.key"), "-out", str(foreign), "-subj", "/CN=Elsewhere", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    issuer = x509.load_pem_x509_certificate(foreign.read_bytes())
    request = ocsp.OCSPRequestBuilder().add_certificate(issuer, issuer, hashes.SHA1()).build()
    answer = httpx.post(f"{line.http}/ocsp", content=request.public_bytes(serialization.Encoding.DER), timeout=30)
    assert answer.status_code == 200
    assert ocsp.load_der_ocsp_response(answer.content).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_the_responder_certificate_and_a_response_pass_pkilint(line: Line) -> None:
    responder = ocsp_service.responder(line.world.inst, "issuing").certificate
    assert responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.OCSP_SIGNING]
    )
    assert responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    pem = line.world.tmp / "responder.pem"
    pem.write_bytes(responder.public_bytes(serialization.Encoding.PEM))
    bin_dir = Path(sys.executable).parent
    lint = subprocess.run(
        [str(bin_dir / "lint_pkix_cert"), "lint", "-s", "ERROR", str(pem)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    response = line.world.tmp / "response.der"
    response.write_bytes(get(line, request_for(line, "SN-BAD")).content)
    lint = subprocess.run(
        [str(bin_dir / "lint_ocsp_response"), "lint", "-s", "ERROR", str(response)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_issued_certificates_name_the_responder_beside_ca_issuers(line: Line) -> None:
    inst = line.world.inst
    fixture_cert = x509.load_pem_x509_certificate(line.world.clients[0].credentials.cert.read_bytes())
    for cert in (x509.load_pem_x509_certificate(line.certs["SN-GOOD"].read_bytes()), fixture_cert):
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        methods = {d.access_method: d.access_location.value for d in aia}
        assert methods[AuthorityInformationAccessOID.OCSP] == f"{inst.config.pki_url}/ocsp"
        assert AuthorityInformationAccessOID.CA_ISSUERS in methods


def test_openssl_ocsp_on_a_fixture_certificate_asks_the_station_ca(line: Line) -> None:
    station = line.world.inst.cas.cert_path("station")
    fixture_cert = line.world.clients[0].credentials.cert
    result = subprocess.run(
        ["openssl", "ocsp", "-issuer", str(station), "-cert", str(fixture_cert), "-url", f"{line.http}/ocsp",
         "-CAfile", str(line.certs["root"])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert f"{fixture_cert}: good" in result.stdout and "Response verify OK" in result.stderr


def test_https_is_trusted_with_the_root(line: Line) -> None:
    verify = ssl.create_default_context(cafile=str(line.certs["root"]))
    answer = httpx.post(f"{line.world.url}/ocsp", content=request_for(line, "SN-GOOD"), verify=verify, timeout=30)
    assert ocsp.load_der_ocsp_response(answer.content).certificate_status == ocsp.OCSPCertStatus.GOOD
