"""Independent oracles on the certificates FabGuard makes: OpenSSL's chain verification and pkilint's RFC 5280 lint.

The certificates are the real ones: CAs from ``init_instance``, device certificates issued over HTTPS
to units that passed their tests, a fixture certificate from a real enrolment.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from fabguard.domain.values import ProductId, SiteId
from fabguard.pki import profiles
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from tests.support import World, new_instance, tested_device

BIN = Path(sys.executable).parent
LINT = BIN / "lint_pkix_cert"
LINT_PAIR = BIN / "lint_pkix_signer_signee_cert_chain"

# name -> the CA that signed it (None for the self-signed root)
ISSUER_OF = {
    "root": None,
    "issuing": "root",
    "station": "root",
    "server": "station",
    "fixture": "station",
    "device-p256": "issuing",
    "device-p384": "issuing",
    "device-ed25519": "issuing",
}
DEVICES = [n for n in ISSUER_OF if n.startswith("device-")]


def _csr(serial: str, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory of PEM files, one per name in ISSUER_OF, all made by a real instance and server."""
    tmp = tmp_path_factory.mktemp("oracles")
    inst = new_instance(tmp / "home")
    world = World.start(inst, tmp)
    try:
        out = tmp / "pems"
        out.mkdir()
        for name in ("root", "issuing", "station", "server"):
            shutil.copy(inst.cas.cert_path(name), out / f"{name}.pem")
        # A product allowing every key type, with a finite lifetime (UTCTime/GeneralizedTime both appear).
        product_catalog.create_product(
            inst,
            product_id=ProductId("gateway"),
            name="Gateway",
            key_types=["ec-p256", "ec-p384", "ed25519"],
            cert_lifetime_days=3650,
            actor="test",
        )
        fx = world.fixture("fx-1")
        (out / "fixture.pem").write_text(fx.credentials.cert.read_text())
        sensor_order = world.order(quota=5)
        device = tested_device(fx, "SN-ORACLE-1")
        (out / "device-p256.pem").write_text(
            fx.provision(sensor_order, "SN-ORACLE-1", device.csr_pem()).certificate_pem
        )
        gateway_order = orders.create_order(
            inst, product_id=ProductId("gateway"), site_id=SiteId("cm-a"), quota=5, actor="test"
        ).id
        for name, key in (
            ("device-p384", ec.generate_private_key(ec.SECP384R1())),
            ("device-ed25519", ed25519.Ed25519PrivateKey.generate()),
        ):
            serial = f"SN-ORACLE-{name.upper()}"
            tested_device(fx, serial)
            (out / f"{name}.pem").write_text(fx.provision(gateway_order, serial, _csr(serial, key)).certificate_pem)
        yield out
    finally:
        world.stop()
        inst.close()


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, check=False)


def openssl_verify(pems: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``openssl verify -x509_strict`` of ``name`` with the root as the only trust anchor."""
    chain: list[str] = []
    issuer = ISSUER_OF[name]
    while issuer not in (None, "root"):
        chain.append(str(pems / f"{issuer}.pem"))
        issuer = ISSUER_OF[issuer]
    untrusted = ["-untrusted", chain[0]] if chain else []
    return run(
        "openssl", "verify", "-x509_strict", *extra, "-CAfile", pems / "root.pem", *untrusted, pems / f"{name}.pem"
    )


# ----------------------------------------------------------------------------- openssl verify


@pytest.mark.parametrize("name", DEVICES)
def test_device_certificate_verifies_with_openssl_to_the_root_through_the_issuing_ca(pems: Path, name: str) -> None:
    result = run(
        "openssl", "verify", "-CAfile", pems / "root.pem", "-untrusted", pems / "issuing.pem", pems / f"{name}.pem"
    )
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr
    strict = openssl_verify(pems, name)
    assert strict.returncode == 0, strict.stdout + strict.stderr


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("root", ()),
        ("issuing", ()),
        ("station", ()),
        ("fixture", ("-purpose", "sslclient")),
        ("server", ("-purpose", "sslserver", "-verify_ip", "127.0.0.1")),
    ],
    ids=["root", "issuing", "station", "fixture-as-tls-client", "server-by-ip"],
)
def test_instance_certificate_verifies_with_openssl_for_its_purpose(
    pems: Path, name: str, extra: tuple[str, ...]
) -> None:
    result = openssl_verify(pems, name, *extra)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "wrong_intermediate", "purpose"),
    [
        ("device-p256", "station.pem", None),
        ("fixture", "issuing.pem", None),
        ("fixture", "station.pem", "sslserver"),
        ("server", "station.pem", "sslclient"),
    ],
    ids=["device-via-station-ca", "fixture-via-issuing-ca", "fixture-as-server", "server-as-client"],
)
def test_certificates_do_not_verify_outside_their_own_branch_or_purpose(
    pems: Path, name: str, wrong_intermediate: str, purpose: str | None
) -> None:
    """The oracle is not a rubber stamp: wrong chains and wrong purposes fail."""
    args = ["-purpose", purpose] if purpose else []
    result = run(
        "openssl", "verify", *args, "-CAfile", pems / "root.pem", "-untrusted", pems / wrong_intermediate,
        pems / f"{name}.pem",
    )  # fmt: skip
    assert result.returncode != 0, result.stdout


def test_device_certificate_does_not_verify_against_a_foreign_root(pems: Path, tmp_path: Path) -> None:
    other = new_instance(tmp_path / "other")
    try:
        result = run(
            "openssl", "verify", "-CAfile", other.cas.cert_path("root"), "-untrusted", pems / "issuing.pem",
            pems / "device-p256.pem",
        )  # fmt: skip
    finally:
        other.close()
    assert result.returncode != 0, result.stdout


# ----------------------------------------------------------------------------- pkilint (RFC 5280)


@pytest.mark.parametrize("name", list(ISSUER_OF))
def test_pkilint_finds_no_error_in_certificate(pems: Path, name: str) -> None:
    result = run(LINT, "lint", "-s", "ERROR", pems / f"{name}.pem")
    findings = result.stdout.strip()
    assert "(ERROR)" not in findings and "(FATAL)" not in findings, f"pkilint on {name}.pem:\n{findings}"
    assert result.returncode == 0, f"pkilint on {name}.pem exited {result.returncode}:\n{findings}\n{result.stderr}"


@pytest.mark.parametrize("name", [n for n, issuer in ISSUER_OF.items() if issuer is not None])
def test_pkilint_finds_each_certificate_consistent_with_its_issuer(pems: Path, name: str) -> None:
    issuer = ISSUER_OF[name]
    result = run(LINT_PAIR, "lint", "-s", "ERROR", pems / f"{issuer}.pem", pems / f"{name}.pem")
    assert result.returncode == 0, f"pkilint pair {issuer} -> {name}:\n{result.stdout}\n{result.stderr}"


def test_pkilint_pair_check_catches_a_wrong_issuer(pems: Path) -> None:
    """Control for the pair lint: the station CA did not sign a device certificate."""
    result = run(LINT_PAIR, "lint", "-s", "ERROR", pems / "station.pem", pems / "device-p256.pem")
    assert result.returncode != 0
    assert "pkix.signature_verification_failed" in result.stdout


def test_pkilint_finds_no_error_in_a_server_certificate_for_a_dotted_host_name(pems: Path, tmp_path: Path) -> None:
    """Narrows down a server-certificate finding: the profile itself, named for a real host, lints clean."""
    home = pems.parent / "home"
    station = Instance.open(home, migrate=False)
    try:
        cert = profiles.server_certificate(
            station.cas.issuer("station"),
            ec.generate_private_key(ec.SECP256R1()).public_key(),
            "Acme Devices",
            ("fabguard.example.com", "127.0.0.1"),
            datetime.now(UTC),
        )
    finally:
        station.close()
    path = tmp_path / "server-named.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result = run(LINT, "lint", "-s", "ERROR", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_server_certificate_names_the_configured_hostname_for_openssl(tmp_path: Path) -> None:
    from fabguard.service.core.seeding import init_instance

    home = tmp_path / "named"
    init_instance(home, organization="Acme Devices", hostnames=("fabguard.acme.example", "127.0.0.1"))
    result = run(
        "openssl",
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "fabguard.acme.example",
        "-CAfile",
        home / "ca" / "root.pem",
        "-untrusted",
        home / "ca" / "station.pem",
        home / "ca" / "server.pem",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wrong = run(
        "openssl",
        "verify",
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "evil.example",
        "-CAfile",
        home / "ca" / "root.pem",
        "-untrusted",
        home / "ca" / "station.pem",
        home / "ca" / "server.pem",
    )
    assert wrong.returncode != 0
