"""EST (RFC 7030) with stock tools only: openssl makes the CSR, curl speaks EST over mutual TLS,
openssl reads the PKCS#7 answer. simpleenroll runs the very same provisioning transaction."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from fabguard.service.catalog import orders
from tests.support import World, tested_device


def sh(*args: object, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in args], input=data, capture_output=True, check=False)


def openssl_csr(tmp: Path, serial: str) -> tuple[bytes, Path]:
    key = tmp / f"{serial}.key"
    der = sh(
        "openssl",
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-subj",
        f"/serialNumber={serial}",
        "-outform",
        "DER",
    )
    assert der.returncode == 0, der.stderr
    return base64.encodebytes(der.stdout), key


def est_request(
    world: World, path: str, body: bytes | None = None, *, cert: Path | None = None, key: Path | None = None
) -> tuple[int, bytes]:
    """curl against /.well-known/est<path>, with a client certificate when given; (status, body)."""
    args: list[object] = ["curl", "-sS", "--cacert", world.root_ca, "-o", "-", "-w", "\n%{http_code}"]
    if cert is not None and key is not None:
        args += ["--cert", cert, "--key", key]
    if body is not None:
        args += ["-H", "Content-Type: application/pkcs10", "--data-binary", "@-"]
    result = sh(*args, f"{world.url}/.well-known/est{path}", data=body)
    assert result.returncode == 0, result.stderr
    payload, _, status = result.stdout.rpartition(b"\n")
    return int(status), payload


def curl_est(world: World, fx: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    creds = world.tmp / "fixtures" / fx
    return est_request(world, path, body, cert=creds / "fixture.pem", key=creds / "fixture.key")


def pkcs7_certs(payload: bytes) -> str:
    der = base64.decodebytes(payload)
    out = sh("openssl", "pkcs7", "-inform", "DER", "-print_certs", data=der)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode()


def test_cacerts_returns_the_issuing_ca_and_root_as_pkcs7(world: World) -> None:
    fx = world.fixture("fx-1")
    status, payload = curl_est(world, fx.credentials.fixture_id, "/cacerts")
    assert status == 200
    text = pkcs7_certs(payload)
    assert "Device Issuing CA" in text and "FabGuard Root CA" in text


def test_csrattrs_asks_for_p256_ecdsa_sha256_and_a_serial(world: World) -> None:
    world.fixture("fx-1")
    status, payload = curl_est(world, "fx-1", "/csrattrs")
    assert status == 200
    parsed = sh("openssl", "asn1parse", "-inform", "DER", data=base64.decodebytes(payload)).stdout.decode()
    assert "prime256v1" in parsed and "ecdsa-with-SHA256" in parsed and "serialNumber" in parsed


def test_simpleenroll_with_stock_tools_provisions_a_tested_unit(world: World, tmp_path: Path) -> None:
    order = world.order(quota=1, order_id="po-est")
    fx = world.fixture("fx-1")
    tested_device(fx, "SN-EST-1")
    csr, key = openssl_csr(tmp_path, "SN-EST-1")

    status, payload = curl_est(world, "fx-1", f"/{order}/simpleenroll", csr)

    assert status == 200, payload
    text = pkcs7_certs(payload)
    assert "serialNumber=SN-EST-1" in text.replace(" = ", "=")
    (tmp_path / "device.pem").write_text(text)
    ok = sh(
        "openssl",
        "verify",
        "-CAfile",
        world.root_ca,
        "-untrusted",
        world.inst.cas.cert_path("issuing"),
        tmp_path / "device.pem",
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    pub_cert = sh("openssl", "x509", "-noout", "-pubkey", "-in", tmp_path / "device.pem").stdout
    pub_key = sh("openssl", "pkey", "-pubout", "-in", key).stdout
    assert pub_cert == pub_key
    assert orders.get_order(world.inst, order).used == 1

    again_status, again = curl_est(world, "fx-1", f"/{order}/simpleenroll", csr)
    assert again_status == 200 and pkcs7_certs(again) == text
    assert orders.get_order(world.inst, order).used == 1


def test_simpleenroll_refusals_carry_the_same_codes_and_consume_nothing(world: World, tmp_path: Path) -> None:
    order = world.order(quota=1, order_id="po-est")
    fx = world.fixture("fx-1")
    untested, _ = openssl_csr(tmp_path, "SN-EST-2")
    status, payload = curl_est(world, "fx-1", f"/{order}/simpleenroll", untested)
    assert status == 409 and json.loads(payload)["error"]["code"] == "test_missing"

    tested_device(fx, "SN-EST-3")
    tested_device(fx, "SN-EST-4")
    first, _ = openssl_csr(tmp_path, "SN-EST-3")
    second, _ = openssl_csr(tmp_path, "SN-EST-4")
    assert curl_est(world, "fx-1", f"/{order}/simpleenroll", first)[0] == 200
    status, payload = curl_est(world, "fx-1", f"/{order}/simpleenroll", second)
    assert status == 409 and json.loads(payload)["error"]["code"] == "quota_exhausted"

    status, payload = curl_est(world, "fx-1", f"/{order}/simpleenroll", b"bm90IGEgY3Ny\n")
    assert status == 400 and json.loads(payload)["error"]["code"] == "csr_invalid"
    view = orders.get_order(world.inst, order)
    assert view.used == 1 and view.refused == {"csr_invalid": 1, "quota_exhausted": 1, "test_missing": 1}


def test_unlabelled_simpleenroll_uses_the_sites_only_active_order(world: World, tmp_path: Path) -> None:
    order = world.order(quota=2, order_id="po-only")
    fx = world.fixture("fx-1")
    tested_device(fx, "SN-EST-5")
    csr, _ = openssl_csr(tmp_path, "SN-EST-5")
    assert curl_est(world, "fx-1", "/simpleenroll", csr)[0] == 200
    assert orders.get_order(world.inst, order).used == 1

    world.order(quota=2, order_id="po-second")
    tested_device(fx, "SN-EST-6")
    csr, _ = openssl_csr(tmp_path, "SN-EST-6")
    status, payload = curl_est(world, "fx-1", "/simpleenroll", csr)
    assert status == 400 and json.loads(payload)["error"]["code"] == "est_label_required"


def test_simpleenroll_without_a_client_certificate_is_refused(world: World, tmp_path: Path) -> None:
    order = world.order(quota=1)
    csr, _ = openssl_csr(tmp_path, "SN-EST-7")
    status, payload = est_request(world, f"/{order}/simpleenroll", csr)
    assert status == 401 and json.loads(payload)["error"]["code"] == "unauthorized"
    assert orders.get_order(world.inst, order).used == 0


def test_simplereenroll_renews_with_the_units_own_certificate_for_free(world: World, tmp_path: Path) -> None:
    order = world.order(quota=1, order_id="po-est")
    fx = world.fixture("fx-1")
    tested_device(fx, "SN-RE-1")
    csr, key = openssl_csr(tmp_path, "SN-RE-1")
    status, payload = curl_est(world, "fx-1", f"/{order}/simpleenroll", csr)
    assert status == 200
    (tmp_path / "current.pem").write_text(pkcs7_certs(payload))
    (tmp_path / "rekey").mkdir()
    new_csr, new_key = openssl_csr(tmp_path / "rekey", "SN-RE-1")

    def reenroll(cert: Path, key_file: Path, body: bytes) -> tuple[int, bytes]:
        return est_request(world, "/simplereenroll", body, cert=cert, key=key_file)

    status, payload = reenroll(tmp_path / "current.pem", key, new_csr)
    assert status == 200, payload
    renewed = pkcs7_certs(payload)
    assert "SN-RE-1" in renewed and renewed != (tmp_path / "current.pem").read_text()
    (tmp_path / "renewed.pem").write_text(renewed)
    assert (
        sh("openssl", "x509", "-noout", "-pubkey", "-in", tmp_path / "renewed.pem").stdout
        == sh("openssl", "pkey", "-pubout", "-in", new_key).stdout
    )
    assert orders.get_order(world.inst, order).used == 1  # quota 1, already spent: renewal is free

    # The superseded certificate no longer renews anything; a fixture certificate is not a unit's.
    status, payload = reenroll(tmp_path / "current.pem", key, new_csr)
    assert status == 401 and json.loads(payload)["error"]["code"] == "unknown_device"
    creds = world.tmp / "fixtures" / "fx-1"
    status, payload = reenroll(creds / "fixture.pem", creds / "fixture.key", new_csr)
    assert status == 401 and json.loads(payload)["error"]["code"] == "unknown_device"
