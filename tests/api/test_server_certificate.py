"""The HTTPS listener's own certificate from the operator's CA (issue 25, item 2), against a real ``fabguard
serve`` process: clients verify it with the operator's CA alone; fixtures enrol, are handed that CA, and
still authenticate with their client certificates under FabGuard's station CA; EST answers; SIGHUP makes new
connections get a new certificate while an open connection goes on with the old one; a bad file is
refused by ``config tls`` and, replaced under a running server, leaves the old certificate serving."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabguard.fixture.client import FixtureClient, enroll
from tests.operator_ca import OperatorCA, served_serial
from tests.served import cli, free_port, init_instance, serve, stop, wait_healthy
from tests.support import SO_PIN, USER_PIN, SoftHsm, fresh_pg_database, tested_device

pytestmark = pytest.mark.slow
PASSPHRASE = "operator key passphrase"


def _until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _api(url: str, trust: Path, admin: str) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(trust))
    return httpx.Client(base_url=url, verify=verify, timeout=30, headers={"Authorization": f"Bearer {admin}"})


def _order(api: httpx.Client) -> None:
    for path, body in (
        ("/api/v1/products", {"id": "sensor", "name": "Sensor"}),
        ("/api/v1/sites", {"id": "cm-a", "name": "CM A"}),
        ("/api/v1/orders", {"id": "po-1", "product_id": "sensor", "site_id": "cm-a", "quota": 10}),
    ):
        assert api.post(path, json=body).status_code == 201, path


def _client_cert_from(operator: OperatorCA, tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate the operator's CA signed: no fixture's, and no CA of FabGuard's vouches for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    now = operator.issuing.not_valid_before_utc
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(operator.issuing.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(operator.issuing.not_valid_after_utc)
        .sign(operator.issuing_key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "intruder.pem", tmp_path / "intruder.key"
    cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + operator.issuing.public_bytes(serialization.Encoding.PEM)
    )
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


def test_the_operator_certificate_serves_fixtures_est_and_reloads_on_sighup(tmp_path: Path) -> None:
    operator = OperatorCA(tmp_path / "operator")
    passphrase_file = tmp_path / "tls-passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    cert, key, first = operator.server_certificate("server", passphrase=PASSPHRASE)
    port, home = free_port(), tmp_path / "home"
    url, trust = f"https://127.0.0.1:{port}", operator.root_file
    admin = init_instance(
        home, port, "--tls-cert", str(cert), "--tls-key", str(key),
        "--tls-key-passphrase-file", str(passphrase_file), "--tls-ca", str(trust),
    )  # fmt: skip
    log = tmp_path / "serve.log"
    server = serve(home, log, port)
    try:
        wait_healthy(url, trust, server)
        assert served_serial(port, trust) == first.serial_number
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # not the station CA's any more
            httpx.get(f"{url}/api/v1/health", verify=ssl.create_default_context(cafile=str(home / "ca" / "root.pem")))

        with _api(url, trust, admin) as api:
            _order(api)
            est = api.get("/.well-known/est/cacerts")
            assert est.status_code == 200 and est.headers["content-type"].startswith("application/pkcs7-mime")

        added = cli(home, "fixture", "add", "fx-1", "--site", "cm-a")
        assert f"--ca {trust.name}" in added.stdout  # the hint names the operator's CA
        [token] = re.findall(r"fge_[A-Za-z0-9_\-]+", added.stdout)
        credentials = enroll(url, token, tmp_path / "fx", ca_file=trust)
        assert operator.root.public_bytes(serialization.Encoding.PEM).decode() in credentials.ca.read_text()
        with FixtureClient(credentials) as fx:
            device = tested_device(fx, "SN-1")
            assert fx.provision("po-1", "SN-1", device.csr_pem()).serial == "SN-1"

        # A client certificate from the operator's CA is no fixture's: client trust is FabGuard's CAs only.
        intruder = ssl.create_default_context(cafile=str(trust))
        intruder.load_cert_chain(*_client_cert_from(operator, tmp_path))
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/api/v1/health", verify=intruder, timeout=10).raise_for_status()

        # A connection open across the reload.
        held = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(trust)))
        held.request("GET", "/api/v1/health")
        assert held.getresponse().read() and held.sock is not None

        cert, key, second = operator.server_certificate("server", passphrase=PASSPHRASE)  # replaced in place
        server.send_signal(signal.SIGHUP)
        _until(lambda: served_serial(port, trust) == second.serial_number, "new connections get the new certificate")
        held.request("GET", "/api/v1/health")
        answer = held.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
        old = x509.load_der_x509_certificate(held.sock.getpeercert(binary_form=True))  # type: ignore[union-attr]
        assert old.serial_number == first.serial_number  # the same connection, its own certificate
        held.close()

        with FixtureClient(credentials) as fx:  # a fixture authenticates under the reloaded context too
            device = tested_device(fx, "SN-2", seed=2)
            assert fx.provision("po-1", "SN-2", device.csr_pem()).serial == "SN-2"

        # A key that is not the certificate's, put under the running server: refused, the old one serves.
        _, stray_key, _ = operator.server_certificate("stray", passphrase=PASSPHRASE)
        good_key = key.read_bytes()
        key.write_bytes(stray_key.read_bytes())
        server.send_signal(signal.SIGHUP)
        _until(lambda: "not reloaded" in log.read_text(), "the refusal is logged")
        assert "certificate_key_mismatch" in log.read_text() or "does not match its key" in log.read_text()
        assert served_serial(port, trust) == second.serial_number
        key.write_bytes(good_key)

        # Other files named with config tls, then SIGHUP.
        other_cert, other_key, third = operator.server_certificate("renewed", with_root=True)
        cli(home, "config", "tls", "--cert", str(other_cert), "--key", str(other_key))
        os.kill(server.pid, signal.SIGHUP)
        _until(lambda: served_serial(port, trust) == third.serial_number, "config tls + SIGHUP serves the new files")
        assert server.poll() is None
    finally:
        stop(server)
    assert "SIGHUP: the TLS certificate was reloaded" in log.read_text(), log.read_text()


def test_config_tls_refuses_what_it_cannot_serve_and_changes_nothing(tmp_path: Path) -> None:
    operator = OperatorCA(tmp_path / "operator")
    home = tmp_path / "home"
    init_instance(home, free_port())
    before = (home / "instance.json").read_text()
    cert, key, _ = operator.server_certificate("one")
    _, other_key, _ = operator.server_certificate("two")
    locked_cert, locked_key, _ = operator.server_certificate("locked", passphrase=PASSPHRASE)
    wrong = tmp_path / "wrong"
    wrong.write_text("a passphrase, not the one")
    for args, code in (
        (("--cert", str(cert), "--key", str(other_key)), "certificate_key_mismatch"),
        (("--cert", str(tmp_path / "missing.pem"), "--key", str(key)), "server_tls_unreadable"),
        (("--cert", str(key), "--key", str(key)), "server_tls_unreadable"),  # a key is no certificate
        (("--cert", str(locked_cert), "--key", str(locked_key)), "server_tls_unreadable"),  # no passphrase file
        (("--cert", str(locked_cert), "--key", str(locked_key), "--key-passphrase-file", str(wrong)), "server_tls_unreadable"),
        (("--cert", str(operator.root_file), "--key", str(key)), "certificate_key_mismatch"),
    ):  # fmt: skip
        refused = cli(home, "config", "tls", *args, ok=False)
        assert refused.returncode == 3 and f"[{code}]" in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert (home / "instance.json").read_text() == before

    refused = cli(
        tmp_path / "other", "init", "--org", "Acme", "--tls-cert", str(cert), "--tls-key", str(other_key), ok=False
    )
    assert "[certificate_key_mismatch]" in refused.stderr and not (tmp_path / "other" / "instance.json").exists()

    shown = json.loads(
        cli(home, "config", "tls", "--cert", str(cert), "--key", str(key)).stdout.split("\nThe HTTPS")[0]
    )
    assert shown["tls_cert"] == str(cert) and shown["tls_key"] == str(key)
    back = json.loads(cli(home, "config", "tls", "--station").stdout.split("\nSend")[0])
    assert back["tls_cert"] is None and back["tls_key"] is None


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_with_workers_sighup_reloads_every_worker_without_restarting_one(tmp_path: Path) -> None:
    operator = OperatorCA(tmp_path / "operator")
    cert, key, first = operator.server_certificate("server", with_root=True)
    port, home = free_port(), tmp_path / "home"
    with fresh_pg_database() as database:
        init_instance(home, port, "--database-url", database, "--tls-cert", str(cert), "--tls-key", str(key))
        log = tmp_path / "serve.log"
        server = serve(home, log, port, "--workers", "2")
        try:
            wait_healthy(f"https://127.0.0.1:{port}", operator.root_file, server)
            _until(lambda: log.read_text().count("Application startup complete") == 2, "both workers serve", 90)
            workers = _children(server.pid)
            assert {served_serial(port, operator.root_file) for _ in range(8)} == {first.serial_number}

            _, stray_key, _ = operator.server_certificate("stray")
            good_key = key.read_bytes()
            key.write_bytes(stray_key.read_bytes())  # the supervisor checks first: nothing is passed on
            server.send_signal(signal.SIGHUP)
            _until(lambda: "not reloaded" in log.read_text(), "the supervisor refuses the bad files")
            key.write_bytes(good_key)

            cert, key, second = operator.server_certificate("server", with_root=True)
            server.send_signal(signal.SIGHUP)
            _until(
                lambda: log.read_text().count("SIGHUP: the TLS certificate was reloaded") == 2, "each worker reloads"
            )
            # Connections land on either worker (one listening socket): all get the new certificate.
            assert {served_serial(port, operator.root_file) for _ in range(8)} == {second.serial_number}
            assert _children(server.pid) == workers  # no worker was restarted
        finally:
            stop(server)


def _new_token_key(softhsm: SoftHsm, token: str, label: str, *, init: bool = True) -> ec.EllipticCurvePublicKey:
    """A P-256 key made in the token ``token`` (initialised first with ``init``) by a process of its own (this
    one's PKCS#11 library sees only the tokens there were when it loaded); its public key."""
    if init:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", token, "--pin", USER_PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
        )
    make = (
        "import sys\nfrom cryptography.hazmat.primitives import serialization\n"
        "from fabguard.pki.pkcs11 import Pkcs11KeyBackend\n"
        "key = Pkcs11KeyBackend(sys.argv[1], sys.argv[2], sys.argv[3].encode()).generate(sys.argv[4])\n"
        "print(key.public_key().public_bytes(serialization.Encoding.PEM, "
        "serialization.PublicFormat.SubjectPublicKeyInfo).decode())"
    )
    made = subprocess.run(
        [sys.executable, "-c", make, softhsm.module, token, USER_PIN, label],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    public = serialization.load_pem_public_key(made.stdout.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def test_a_key_in_an_hsm_serves_through_openssls_pkcs11_engine_and_reloads(
    softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so").exists():
        pytest.skip("OpenSSL's pkcs11 engine is not installed (apt-get install libengine-pkcs11-openssl)")
    monkeypatch.setenv("FABGUARD_PKCS11_PIN", USER_PIN)  # for the CLI and serve subprocesses, as in production
    # A token of its own: OpenSSL's pkcs11 engine (libp11) enumerates a token's keys to find one, and fails on
    # an Ed25519 key, which other tests of this session may have left in the shared one (docs/operations.md).
    hsm_token = f"tls-{os.getpid()}-{time.monotonic_ns()}"
    operator = OperatorCA(tmp_path / "operator")
    label = "tls-key"
    cert, first = operator.certificate_for(_new_token_key(softhsm, hsm_token, label), "hsm", with_root=True)
    uri = f"pkcs11:token={hsm_token};object={label};type=private"
    port, home = free_port(), tmp_path / "home"
    admin = init_instance(home, port)

    wrong_cert, _, _ = operator.server_certificate("not-the-hsm-key")
    refused = cli(
        home,
        "config",
        "tls",
        "--cert",
        str(wrong_cert),
        "--pkcs11-key",
        uri,
        "--pkcs11-module",
        softhsm.module,
        ok=False,
    )
    assert "[certificate_key_mismatch]" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    refused = cli(home, "config", "tls", "--cert", str(cert), "--pkcs11-key", f"pkcs11:token={hsm_token};object=no-such-key",
                  "--pkcs11-module", softhsm.module, ok=False)  # fmt: skip
    assert "[server_tls_unreadable]" in refused.stderr, refused.stderr
    cli(home, "config", "tls", "--cert", str(cert), "--pkcs11-key", uri, "--pkcs11-module", softhsm.module)

    url, trust = f"https://127.0.0.1:{port}", operator.root_file
    log = tmp_path / "serve.log"
    server = serve(home, log, port)
    try:
        wait_healthy(url, trust, server)
        assert served_serial(port, trust) == first.serial_number  # the handshake was signed in the HSM
        with _api(url, trust, admin) as api:
            _order(api)
        added = cli(home, "fixture", "add", "fx-1", "--site", "cm-a")
        [token] = re.findall(r"fge_[A-Za-z0-9_\-]+", added.stdout)
        with FixtureClient(enroll(url, token, tmp_path / "fx", ca_file=trust)) as fx:
            device = tested_device(fx, "SN-1")
            assert fx.provision("po-1", "SN-1", device.csr_pem()).serial == "SN-1"

        renewed_label = f"{label}-2"
        operator.certificate_for(_new_token_key(softhsm, hsm_token, renewed_label, init=False), "hsm-2", with_root=True)
        renewed = x509.load_pem_x509_certificates((operator.directory / "hsm-2.pem").read_bytes())[0]
        renewed_uri = f"pkcs11:token={hsm_token};object={renewed_label};type=private"
        cli(home, "config", "tls", "--cert", str(operator.directory / "hsm-2.pem"), "--pkcs11-key", renewed_uri,
            "--pkcs11-module", softhsm.module)  # fmt: skip
        server.send_signal(signal.SIGHUP)
        _until(lambda: served_serial(port, trust) == renewed.serial_number, "the HSM key is reloaded on SIGHUP")
    finally:
        stop(server)
