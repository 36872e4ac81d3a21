"""``fabguard doctor`` on a fresh instance (healthy: warnings at most, exit 0) and on broken ones (a key
file readable by others, a plain key, a database behind the code, certificates expired or a clock gone
back, seen through the instance's clock): each finding says what to fix, and any failed one exits 1. An
unreachable public URL is only a warning."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.domain.values import Role
from fabguard.service.access import tokens
from fabguard.service.core.instance import Instance
from fabguard.service.operations import doctor
from tests.operator_ca import OperatorCA
from tests.support import PASSPHRASE

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    port = _free_port()  # nothing listens there: the URL probe finds the server down
    result = runner.invoke(
        app, ["--home", str(home), "init", "--org", "Acme", "--public-url", f"https://127.0.0.1:{port}"]
    )
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def passphrase_file(tmp_path: Path) -> dict[str, str]:
    """The environment of a service that reads its passphrase from a file only it can read."""
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE)
    path.chmod(0o600)
    return {"FABGUARD_KEY_PASSPHRASE": "", "FABGUARD_KEY_PASSPHRASE_FILE": str(path)}


def run_doctor(home: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["--home", str(home), "doctor", "--json", *args], env=env, catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


def _findings(report: dict[str, object], status: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = [f for f in report["findings"] if f["status"] == status]  # type: ignore[attr-defined]
    return found


def test_a_fresh_instance_is_healthy_and_an_unreachable_url_is_only_a_warning(
    home: Path, passphrase_file: dict[str, str]
) -> None:
    code, report = run_doctor(home, passphrase_file)
    assert code == 0 and report["healthy"] is True, report
    assert not _findings(report, "failed")
    assert {f["check"] for f in _findings(report, "ok")} >= {"permissions", "keys", "database", "clock", "certificates"}
    unreachable = [f for f in _findings(report, "warning") if "does not answer" in f["message"]]
    assert unreachable and all(f["check"] == "urls" and f["fix"] for f in unreachable), report
    code, offline = run_doctor(home, passphrase_file, "--offline")
    assert code == 0 and not any("does not answer" in f["message"] for f in _findings(offline, "warning"))


def test_text_output_says_what_to_fix(home: Path, passphrase_file: dict[str, str]) -> None:
    (home / "keys" / "issuing.key.pem").chmod(0o644)
    result = runner.invoke(app, ["--home", str(home), "doctor", "--offline"], env={**passphrase_file, "COLUMNS": "200"})
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert f"FAILED permissions {home}/keys/issuing.key.pem is readable by others (mode 644)" in out, out
    assert f"fix: chmod 600 {home}/keys/issuing.key.pem" in out and "1 failed" in out


def test_a_readable_key_a_plain_key_and_a_readable_passphrase_file_fail(
    home: Path, passphrase_file: dict[str, str]
) -> None:
    (home / "keys" / "issuing.key.pem").chmod(0o644)
    Path(passphrase_file["FABGUARD_KEY_PASSPHRASE_FILE"]).chmod(0o640)
    plain = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (home / "keys" / "server.key.pem").write_bytes(plain)
    code, report = run_doctor(home, passphrase_file, "--offline")
    assert code == 1 and report["healthy"] is False
    failed = {(f["check"], f["message"].split(" is ")[0], f["fix"]) for f in _findings(report, "failed")}
    assert ("permissions", f"{home}/keys/issuing.key.pem", f"chmod 600 {home}/keys/issuing.key.pem") in failed
    secret = passphrase_file["FABGUARD_KEY_PASSPHRASE_FILE"]
    assert ("permissions", secret, f"chmod 600 {secret}") in failed
    assert any(c == "keys" and m == f"{home}/keys/server.key.pem" for c, m, _ in failed), failed


def test_a_wrong_passphrase_and_a_database_behind_the_code_fail(home: Path) -> None:
    inst = Instance.open(home)
    try:
        with inst.db.transaction() as s:
            s.execute(text("UPDATE alembic_version SET version_num = '0016'"))
    finally:
        inst.close()
    code, report = run_doctor(home, {"FABGUARD_KEY_PASSPHRASE": "not-the-passphrase"}, "--offline")
    assert code == 1
    failed = {f["check"]: f for f in _findings(report, "failed")}
    assert "database_behind_code" in failed["database"]["message"]
    assert failed["database"]["fix"] == "back it up (fabguard backup), then: fabguard db upgrade"
    assert "cannot sign" in failed["keys"]["message"] and "passphrase" in failed["keys"]["fix"]


def test_expired_certificates_and_a_clock_gone_back_fail(any_instance: Instance) -> None:
    tokens.create_token(any_instance, name="erin", role=Role.ADMIN, actor="test")  # an event, dated now
    now = datetime.now(UTC)
    later = Instance.open(any_instance.home, clock=lambda: now + timedelta(days=3 * 365))
    try:
        findings = doctor.examine(later, {"FABGUARD_KEY_PASSPHRASE": PASSPHRASE})
    finally:
        later.close()
    expired = [f for f in findings if f.check == "certificates" and f.status == "failed"]
    assert [f.message.split(" expired")[0] for f in expired] == ["the server certificate"], findings
    assert "new server certificate" in str(expired[0].fix)

    earlier = Instance.open(any_instance.home, clock=lambda: now - timedelta(hours=1))
    try:
        findings = doctor.examine(earlier, {"FABGUARD_KEY_PASSPHRASE": PASSPHRASE})
    finally:
        earlier.close()
    clock = [f for f in findings if f.check == "clock" and f.status == "failed"]
    assert any("the clock went back" in f.message and "NTP" in str(f.fix) for f in clock), findings


def test_the_operator_certificate_is_checked_and_a_wrong_host_fails(
    home: Path, passphrase_file: dict[str, str], tmp_path: Path
) -> None:
    operator = OperatorCA(tmp_path / "operator")
    cert, key, leaf = operator.server_certificate("server", hosts=("127.0.0.1",), with_root=True)
    configured = runner.invoke(app, ["--home", str(home), "config", "tls", "--cert", str(cert), "--key", str(key)])
    assert configured.exit_code == 0, configured.output
    code, report = run_doctor(home, passphrase_file, "--offline")
    [tls] = [f for f in report["findings"] if f["check"] == "tls"]  # type: ignore[attr-defined]
    assert code == 0 and tls["status"] == "ok" and f"serial {leaf.serial_number:x}" in tls["message"], report

    cert, key, _ = operator.server_certificate("elsewhere", hosts=("fab.example.com",), with_root=True)
    runner.invoke(app, ["--home", str(home), "config", "tls", "--cert", str(cert), "--key", str(key)])
    code, report = run_doctor(home, passphrase_file, "--offline")
    [tls] = [f for f in report["findings"] if f["check"] == "tls"]  # type: ignore[attr-defined]
    assert code == 1 and tls["status"] == "failed" and "not 127.0.0.1" in tls["message"], report
    assert not any("server certificate names" in f["message"] for f in report["findings"])  # type: ignore[attr-defined]
