"""``fabguard doctor`` on the operator's HTTPS certificate: expiry, the key matching, the names covering the
public URL's host, the key file private, a CA for fixtures (real certificates from an operator CA)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabguard.service.core.config import InstanceConfig
from fabguard.service.operations.doctor_tls import examine_operator_tls
from tests.operator_ca import OperatorCA


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> OperatorCA:
    return OperatorCA(tmp_path_factory.mktemp("operator"))


def _config(
    cert: Path, key: Path, *, host: str = "127.0.0.1", passphrase: Path | None = None, ca: Path | None = None
) -> InstanceConfig:
    return InstanceConfig(
        organization="Acme",
        hostnames=(host,),
        database_url=None,
        public_url=f"https://{host}:8443",
        tls_cert=str(cert),
        tls_key=str(key),
        tls_key_passphrase_file=str(passphrase) if passphrase else None,
        tls_ca=str(ca) if ca else None,
    )


def _findings(config: InstanceConfig, now: datetime | None = None) -> list[tuple[str, str]]:
    """Judged now by default: the certificates are made when a test runs, which in a long run of the suite is
    minutes after this module was imported (a time taken then saw them "not yet valid")."""
    at = now if now is not None else datetime.now(UTC)
    return [(status, message) for status, message, _ in examine_operator_tls(config, at)]


def test_a_good_certificate_is_one_ok_naming_its_serial(operator: OperatorCA, tmp_path: Path) -> None:
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple\n")
    cert, key, leaf = operator.server_certificate("good", passphrase="correct horse battery staple")
    [(status, message)] = _findings(_config(cert, key, passphrase=passphrase, ca=operator.root_file))
    assert status == "ok" and f"serial {leaf.serial_number:x}" in message


def test_expired_soon_to_expire_and_not_naming_the_public_host(operator: OperatorCA) -> None:
    cert, key, leaf = operator.server_certificate("short", days=10, with_root=True)
    [(status, message)] = _findings(_config(cert, key))
    assert status == "warning" and "expires in 9 days" in message
    [(status, message)] = _findings(_config(cert, key), now=leaf.not_valid_after_utc + timedelta(seconds=1))
    assert status == "failed" and "expired" in message
    cert, key, _ = operator.server_certificate("long", with_root=True)
    [(status, message)] = _findings(_config(cert, key, host="fab.example.com"))
    assert status == "failed" and "not fab.example.com" in message and "127.0.0.1" in message


def test_a_wildcard_name_covers_one_label(operator: OperatorCA) -> None:
    cert, key, _ = operator.server_certificate("wild", hosts=("*.example.com",), with_root=True)
    assert [s for s, _ in _findings(_config(cert, key, host="fab.example.com"))] == ["ok"]
    assert [s for s, _ in _findings(_config(cert, key, host="a.fab.example.com"))] == ["failed"]


def test_a_key_of_another_certificate_a_readable_key_and_no_ca_for_fixtures(operator: OperatorCA) -> None:
    cert, _, _ = operator.server_certificate("one")
    _, other_key, _ = operator.server_certificate("two")
    [(status, message)] = _findings(_config(cert, other_key, ca=operator.root_file))
    assert status == "failed" and "certificate_key_mismatch" in message

    cert, key, _ = operator.server_certificate("open")  # no root at the end of the chain, no --ca
    key.chmod(0o644)
    found = _findings(_config(cert, key))
    assert ("failed", f"{key} is readable by others") in found
    assert any(s == "warning" and "cannot verify this certificate" in m for s, m in found), found


def test_a_missing_file_and_a_wrong_passphrase_say_they_cannot_be_read(operator: OperatorCA, tmp_path: Path) -> None:
    cert, key, _ = operator.server_certificate("locked", passphrase="the right passphrase")
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all")
    [(status, message)] = _findings(_config(cert, key, passphrase=wrong, ca=operator.root_file))
    assert status == "failed" and "server_tls_unreadable" in message and "passphrase" in message
    [(status, message)] = _findings(_config(tmp_path / "gone.pem", key, ca=operator.root_file))
    assert status == "failed" and "server_tls_unreadable" in message and "gone.pem" in message


def test_no_finding_when_the_station_certificate_is_served() -> None:
    config = InstanceConfig(organization="Acme", hostnames=("127.0.0.1",), database_url=None)
    assert _findings(config) == []
