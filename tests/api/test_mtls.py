"""Mutual TLS with a stock client (curl): who gets in, who is refused at the handshake or by the app."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fabguard.api.server import STACKS, ServerThread, Stack
from fabguard.domain.errors import Refusal
from fabguard.domain.values import FixtureId, SiteId
from fabguard.fixture.client import Credentials, enroll
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.pki import profiles
from fabguard.service.catalog import fixtures, orders
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from tests.support import World, enrolled_fixture_pem, tested_device

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None, reason="needs curl")

WHOAMI = "/api/v1/fixture/whoami"
PROVISION = "/api/v1/units/provision"


@dataclass(frozen=True)
class CurlResult:
    exit_code: int
    status: int  # 0 when no HTTP response came back (the handshake or the connection was refused)
    body: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.body)


def curl(
    world: World,
    path: str,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    cacert: Path | None = None,
    data: Path | None = None,
    headers: tuple[str, ...] = (),
    url: str | None = None,
) -> CurlResult:
    out = world.tmp / f"curl-{random.getrandbits(48):012x}.out"
    cmd = ["curl", "-sS", "--max-time", "20", "-o", str(out), "-w", "%{http_code}"]
    cmd += ["--cacert", str(cacert or world.root_ca)]
    if cert is not None:
        cmd += ["--cert", str(cert)]
    if key is not None:
        cmd += ["--key", str(key)]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", f"@{data}"]
    cmd.append((url or world.url) + path)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    body = out.read_text() if out.exists() else ""
    status = int(done.stdout.strip() or 0)
    return CurlResult(done.returncode, status, body, done.stderr)


def assert_error(result: CurlResult, status: int, code: str) -> None:
    assert result.status == status, result
    body = result.json()
    assert body["error"]["code"] == code and body["error"]["message"], body


def assert_shut_out(result: CurlResult) -> None:
    """No 2xx, and whoami never named anyone: refused at the handshake (status 0) or by the app (4xx)."""
    assert not 200 <= result.status < 300, result
    assert "fixture_id" not in result.body, result
    if result.status == 0:
        assert result.exit_code != 0, result
    else:
        assert 400 <= result.status < 500, result


def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def write_certs(path: Path, *certs: x509.Certificate) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def fixture_like_name(ou: str = "cm-a", cn: str = "fx-1") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Devices"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def foreign_client_certificate(
    ca_name: x509.Name,
) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A throwaway CA (named ``ca_name``) and a client certificate from it that claims to be fx-1."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(fixture_like_name())
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, cert, key


# ----------------------------------------------------------------------------- who gets in


def test_enrolled_fixture_credentials_reach_whoami_with_curl(world: World) -> None:
    creds = world.credentials("fx-1", site="cm-a")

    result = curl(world, WHOAMI, cert=creds.cert, key=creds.key, cacert=creds.ca)

    assert (result.exit_code, result.status) == (0, 200), result
    assert result.json() == {"fixture_id": "fx-1", "site_id": "cm-a"}


def test_two_fixtures_are_told_apart_by_their_certificates(world: World) -> None:
    a = world.credentials("fx-a", site="cm-a")
    b = world.credentials("fx-b", site="cm-b")

    got = [curl(world, WHOAMI, cert=c.cert, key=c.key, cacert=c.ca).json() for c in (a, b, a)]

    assert got == [
        {"fixture_id": "fx-a", "site_id": "cm-a"},
        {"fixture_id": "fx-b", "site_id": "cm-b"},
        {"fixture_id": "fx-a", "site_id": "cm-a"},
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_each_http_stack_carries_the_certificate_and_nothing_from_headers(world: World, stack: Stack) -> None:
    creds = world.credentials("fx-s", site="cm-b")
    pem = creds.cert.read_text().replace("\n", "")
    with ServerThread(world.inst, http=stack) as srv:
        mine = curl(world, WHOAMI, cert=creds.cert, key=creds.key, cacert=creds.ca, url=srv.url)
        none = curl(world, WHOAMI, headers=(f"X-Client-Cert: {pem}",), url=srv.url)

    assert (mine.status, mine.json()) == (200, {"fixture_id": "fx-s", "site_id": "cm-b"}), mine
    assert_error(none, 401, "unauthorized")


# ----------------------------------------------------------------------------- who is refused


def test_no_client_certificate_is_unauthorized_and_recorded(world: World) -> None:
    world.credentials("fx-1")
    before = events.list_events(world.inst, limit=1000)[-1]["seq"]

    result = curl(world, WHOAMI)

    assert_error(result, 401, "unauthorized")
    refused = events.list_events(world.inst, after=before, kind="request.refused")
    assert [(e["code"], e["detail"]["route"]) for e in refused] == [("unauthorized", WHOAMI)]


def test_a_certificate_in_an_http_header_is_not_an_identity(world: World) -> None:
    creds = world.credentials("fx-1")
    pem = creds.cert.read_text().replace("\n", "")

    results = [
        curl(world, WHOAMI, headers=(f"{name}: {pem}",))
        for name in ("X-Client-Cert", "X-SSL-Client-Cert", "SSL-Client-Cert", "X-Forwarded-Client-Cert")
    ]

    for result in results:
        assert_error(result, 401, "unauthorized")


@pytest.mark.parametrize("ca_name", ["foreign", "look-alike-of-station-ca"])
def test_certificate_from_another_ca_is_shut_out(world: World, ca_name: str) -> None:
    creds = world.credentials("fx-1")  # the real fx-1 exists; the intruder claims its name
    name = (
        world.inst.cas.certificate("station").subject
        if ca_name == "look-alike-of-station-ca"
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intruder CA")])
    )
    ca, cert, key = foreign_client_certificate(name)
    d = world.tmp / "intruder"

    alone = curl(world, WHOAMI, cert=write_certs(d / "c.pem", cert), key=write_key(key, d / "k.pem"), cacert=creds.ca)
    with_ca = curl(world, WHOAMI, cert=write_certs(d / "cc.pem", cert, ca), key=d / "k.pem", cacert=creds.ca)

    assert_shut_out(alone)
    assert_shut_out(with_ca)


@pytest.mark.parametrize("history", ["never-enrolled", "enrolled-long-ago"])
def test_expired_station_certificate_is_shut_out(world: World, history: str) -> None:
    past = world.inst.clock() - timedelta(days=3 * 365)
    d = world.tmp / "expired"
    key = ec.generate_private_key(ec.SECP256R1())
    if history == "never-enrolled":
        cert = profiles.fixture_certificate(
            world.inst.cas.issuer("station"), key.public_key(), "Acme Devices", "fx-old", "cm-a", past, days=1
        )
    else:
        # Enrolled for real three years ago (the instance's clock set back), its 730-day certificate has lapsed.
        then = Instance.open(world.inst.home, clock=lambda: past, migrate=False)
        try:
            enrolled_pem = enrolled_fixture_pem(then, "fx-old", key=key)
        finally:
            then.close()
        cert = x509.load_pem_x509_certificate(enrolled_pem.encode())
    assert cert.not_valid_after_utc < world.inst.clock()

    result = curl(world, WHOAMI, cert=write_certs(d / "c.pem", cert), key=write_key(key, d / "k.pem"))

    assert_shut_out(result)
    # Behind the handshake, the app refuses it as well (the second lock of ADR 0001).
    with pytest.raises(Refusal) as refused:
        fixtures.authenticate_fixture(world.inst, cert.public_bytes(serialization.Encoding.DER), route="test")
    assert refused.value.code == "unknown_fixture"


def test_revoked_fixture_is_refused_with_fixture_revoked(world: World) -> None:
    creds = world.credentials("fx-1")
    assert curl(world, WHOAMI, cert=creds.cert, key=creds.key, cacert=creds.ca).status == 200
    fixtures.revoke_fixture(world.inst, FixtureId("fx-1"), reason="decommissioned", actor="test")

    result = curl(world, WHOAMI, cert=creds.cert, key=creds.key, cacert=creds.ca)

    assert_error(result, 403, "fixture_revoked")
    [event] = [e for e in events.list_events(world.inst, kind="request.refused") if e["code"] == "fixture_revoked"]
    assert event["fixture_id"] == "fx-1"


def test_device_certificate_is_not_a_fixture_credential(world: World) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN0001")
    issued = fx.provision(order, "SN0001", device.csr_pem())
    device_cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    issuing, root = world.inst.cas.certificate("issuing"), world.inst.cas.certificate("root")
    d = world.tmp / "device"
    key = write_key(device.key, d / "device.key")

    alone = curl(world, WHOAMI, cert=write_certs(d / "a.pem", device_cert), key=key, cacert=fx.credentials.ca)
    chained = curl(
        world, WHOAMI, cert=write_certs(d / "b.pem", device_cert, issuing, root), key=key, cacert=fx.credentials.ca
    )

    assert_shut_out(alone)
    assert_shut_out(chained)
    # Nor can a device use its certificate to provision units (here: itself again, or another).
    body = d / "provision.json"
    body.write_text(json.dumps({"order_id": order, "serial": "SN0002", "csr": device.clone_as("SN0002").csr_pem()}))
    assert_shut_out(curl(world, PROVISION, cert=d / "b.pem", key=key, cacert=fx.credentials.ca, data=body))
    assert orders.get_order(world.inst, order).used == 1


# ----------------------------------------------------------------------------- the whole story with stock tools


def openssl(*args: str, cwd: Path) -> str:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_provisioning_end_to_end_with_curl_and_openssl(world: World) -> None:
    order = world.order(quota=3)
    d = world.tmp / "line-pc"
    creds: Credentials = enroll(world.url, _token(world, "fx-1"), d / "creds", ca_file=world.root_ca)
    d.mkdir(parents=True, exist_ok=True)
    serial = "SN-CURL-0001"
    tls = {"cert": creds.cert, "key": creds.key, "cacert": creds.ca}

    record = d / "record.json"
    record.write_text(json.dumps(openhtf_record(serial, "fx-1", fail=False, rng=random.Random(3))))
    uploaded = curl(world, "/api/v1/test-records", data=record, **tls)
    assert uploaded.status == 201, uploaded
    assert uploaded.json()["outcome"] == "PASS"

    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/serialNumber={serial}", "-keyout", "device.key", "-out", "device.csr",
        cwd=d,
    )  # fmt: skip
    request = d / "provision.json"
    request.write_text(json.dumps({"order_id": order, "serial": serial, "csr": (d / "device.csr").read_text()}))

    first = curl(world, PROVISION, data=request, **tls)
    again = curl(world, PROVISION, data=request, **tls)

    assert first.status == 201, first
    assert again.status == 200 and again.json()["replayed"] is True, again
    issued = first.json()
    assert again.json()["certificate"] == issued["certificate"]
    (d / "device.pem").write_text(issued["certificate"])
    (d / "root.pem").write_text(world.root_ca.read_text())
    (d / "issuing.pem").write_text(issued["chain"][0])
    assert "device.pem: OK" in openssl(
        "verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "device.pem", cwd=d
    )
    cert_key = openssl("x509", "-in", "device.pem", "-noout", "-pubkey", cwd=d)
    assert cert_key == openssl("pkey", "-in", "device.key", "-pubout", cwd=d)
    subject = openssl("x509", "-in", "device.pem", "-noout", "-subject", "-nameopt", "RFC2253", cwd=d)
    assert f"serialNumber={serial}" in subject
    assert orders.get_order(world.inst, order).used == 1


def _token(world: World, fixture_id: str) -> str:
    _, token = fixtures.create_fixture(
        world.inst, fixture_id=FixtureId(fixture_id), site_id=SiteId("cm-a"), actor="test"
    )
    return token
