"""Revocation URLs that work, end to end: ``fabguard init --public-url --pki-url``, ``fabguard serve --http-port``
as a real process, a device certificate issued and revoked, its CRL fetched from the URL the certificate
names over plain HTTP, and OpenSSL's verdict. ``serve`` says, in one line, when it listens elsewhere."""

from __future__ import annotations

import re
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from fabguard.fixture.client import FixtureClient, enroll
from tests.served import cli, free_port, serve, stop, wait_healthy
from tests.support import tested_device

pytestmark = pytest.mark.slow


def _uri(cert: x509.Certificate, which: str) -> str:
    if which == "crl":
        [point] = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        return str(point.full_name[0].value)  # type: ignore[index]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    [url] = [d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS]
    return str(url)


def _fetch(url: str) -> tuple[str, bytes]:
    assert url.startswith("http://127.0.0.1:")  # loopback only, plain HTTP
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.headers["Content-Type"], answer.read()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Path, int, int, str]]:
    port, http_port = free_port(), free_port()
    home = tmp_path / "home"
    done = cli(
        home,
        "init",
        "--org",
        "Acme Devices",
        "--public-url",
        f"https://127.0.0.1:{port}",
        "--pki-url",
        f"http://127.0.0.1:{http_port}",
    )
    [admin] = re.findall(r"fgt_[A-Za-z0-9_\-]+", done.stdout)
    yield home, port, http_port, admin


def test_a_revoked_device_certificate_is_on_the_crl_its_distribution_point_names(
    home: tuple[Path, int, int, str], tmp_path: Path
) -> None:
    home_dir, port, http_port, admin = home
    url, root = f"https://127.0.0.1:{port}", home_dir / "ca" / "root.pem"
    log = tmp_path / "serve.log"
    server = serve(home_dir, log, port, "--http-port", str(http_port), level="warning")
    try:
        wait_healthy(url, root, server)
        verify = ssl.create_default_context(cafile=str(root))
        with httpx.Client(base_url=url, verify=verify, timeout=30, headers={"Authorization": f"Bearer {admin}"}) as api:
            for path, body in (
                ("/api/v1/products", {"id": "sensor", "name": "Sensor"}),
                ("/api/v1/sites", {"id": "cm-a", "name": "CM A"}),
                ("/api/v1/orders", {"id": "po-1", "product_id": "sensor", "site_id": "cm-a", "quota": 2}),
            ):
                assert api.post(path, json=body).status_code == 201, path
            added = cli(home_dir, "fixture", "add", "fx-1", "--site", "cm-a")
            [token] = re.findall(r"fge_[A-Za-z0-9_\-]+", added.stdout)
            assert f"--server {url}" in added.stdout  # the enrolment hint names the public URL
            with FixtureClient(enroll(url, token, tmp_path / "fx", ca_file=root)) as fx:
                device = tested_device(fx, "SN-1")
                issued = fx.provision("po-1", "SN-1", device.csr_pem())
            cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())

            crl_url, ca_url = _uri(cert, "crl"), _uri(cert, "ca")
            assert crl_url == f"http://127.0.0.1:{http_port}/crl/issuing.crl"
            media, issuing_der = _fetch(ca_url)  # the AIA names the issuing CA's certificate, DER
            assert media == "application/pkix-cert"
            issuing = x509.load_der_x509_certificate(issuing_der)
            assert issuing.subject == cert.issuer
            cert.verify_directly_issued_by(issuing)

            files = {"device": cert, "issuing": issuing}
            for name, c in files.items():
                (tmp_path / f"{name}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))

            def openssl_verify(*extra: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(tmp_path / "issuing.pem"),
                     *extra, str(tmp_path / "device.pem")],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip

            # OpenSSL itself fetches the CRL from the distribution point: good before the revocation.
            fetched = openssl_verify("-crl_check", "-crl_download")
            assert fetched.returncode == 0, fetched.stdout + fetched.stderr

            def openssl_ocsp() -> str:
                """Ask the responder the certificate names (AIA OCSP, read by openssl itself)."""
                device = str(tmp_path / "device.pem")
                where = subprocess.run(["openssl", "x509", "-noout", "-ocsp_uri", "-in", device],
                                       capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
                assert where == f"http://127.0.0.1:{http_port}/ocsp"
                asked = subprocess.run(
                    ["openssl", "ocsp", "-issuer", str(tmp_path / "issuing.pem"), "-cert", device, "-url", where,
                     "-CAfile", str(root), "-nonce"],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert "Response verify OK" in asked.stderr, asked.stdout + asked.stderr
                return asked.stdout

            assert f"{tmp_path / 'device.pem'}: good" in openssl_ocsp()

            revoked = api.post("/api/v1/units/SN-1/revoke", json={"reason": "key_compromise", "note": "test"})
            assert revoked.status_code == 200, revoked.text
            assert f"{tmp_path / 'device.pem'}: revoked" in openssl_ocsp()  # at once

        media, crl_der = _fetch(crl_url)
        assert media == "application/pkix-crl"
        crl = x509.load_der_x509_crl(crl_der)
        assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
        (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        verdict = openssl_verify("-crl_check", "-CRLfile", str(tmp_path / "crl.pem"))
        assert verdict.returncode != 0
        assert "certificate revoked" in verdict.stdout + verdict.stderr
        downloaded = openssl_verify("-crl_check", "-crl_download")
        assert "certificate revoked" in downloaded.stdout + downloaded.stderr
        assert httpx.get(f"http://127.0.0.1:{http_port}/api/v1/health", timeout=10).status_code == 404
    finally:
        stop(server)
    assert "warning" not in log.read_text().lower(), log.read_text()  # it serves where the URLs point


def test_serve_elsewhere_says_so_in_one_line_and_config_set_moves_the_urls(
    home: tuple[Path, int, int, str], tmp_path: Path
) -> None:
    home_dir, port, _, _ = home
    other = free_port()
    log = tmp_path / "serve.log"
    server = serve(home_dir, log, other, level="warning")
    try:
        wait_healthy(f"https://127.0.0.1:{other}", home_dir / "ca" / "root.pem", server)
    finally:
        stop(server)
    warnings = [line for line in log.read_text().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, log.read_text()
    assert f"https://127.0.0.1:{port}" in warnings[0] and f"https://127.0.0.1:{other}" in warnings[0]
    assert "--http-port" in warnings[1]

    moved = cli(home_dir, "config", "set", "public-url", f"https://127.0.0.1:{other}")
    assert f'"public_url": "https://127.0.0.1:{other}"' in moved.stdout
    refused = cli(home_dir, "config", "set", "pki-url", "ftp://127.0.0.1", ok=False)
    assert refused.returncode == 3 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    shown = cli(home_dir, "config", "show")
    assert f'"public_url": "https://127.0.0.1:{other}"' in shown.stdout
