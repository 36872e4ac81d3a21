"""``fabguard handoff``: the files on disk, OpenSSL agreeing, one-line errors, a manifest the auditor's
command verifies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.test_cli import fg


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("handoff-cli") / "home"
    assert fg(home, "init", "--org", "Acme Devices")[0] == 0
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    assert fg(home, "site", "add", "cm-a", "--name", "CM A")[0] == 0
    return home


def test_aws_and_azure_write_files_that_openssl_verifies(home: Path, tmp_path: Path) -> None:
    code, out = fg(
        home, "handoff", "aws", "--ca", "issuing", "--registration-code", "c0" * 32, "--out", str(tmp_path / "aws")
    )
    assert code == 0, out
    assert "README.txt" in out and not (tmp_path / "aws" / "registration-config.json").exists()
    code, out = fg(
        home, "handoff", "azure", "--ca", "issuing", "--verification-code", "ABC123", "--out", str(tmp_path / "az")
    )
    assert code == 0, out
    for d in ("aws", "az"):
        chain, cert = tmp_path / d / "chain.pem", tmp_path / d / "verification.pem"
        result = subprocess.run(["openssl", "verify", "-CAfile", chain, cert], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "az" / "enrollment-group.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aws", "--ca", "issuing", "--registration-code", "short"], "registration_code_invalid"),
        (["aws", "--ca", "nope", "--registration-code", "c0" * 32], "ca_not_found"),
        (["azure", "--ca", "issuing", "--verification-code", "x y"], "verification_code_invalid"),
        (["manifest", "--order", "po-none"], "order_not_found"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(home: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, out = fg(home, "handoff", *args, "--out", str(tmp_path / "out"))
    assert code in (2, 3) and message in out and "Traceback" not in out
    assert not (tmp_path / "out").exists()


def test_manifest_verifies_with_the_auditors_command_and_fails_when_changed(home: Path, tmp_path: Path) -> None:
    code, out = fg(home, "order", "create", "--id", "po-7", "--product", "sensor", "--site", "cm-a", "--quota", "3")
    assert code == 0, out
    code, key = fg(home, "ledger", "key")
    (tmp_path / "ledger.pub").write_text(key)
    code, out = fg(home, "handoff", "manifest", "--order", "po-7", "--out", str(tmp_path / "m"))
    assert code == 0 and "0 devices" in out, out
    for name in ("manifest.json", "manifest.csv"):
        code, out = fg(
            home, "audit", "verify-report", str(tmp_path / "m" / name), "--key", str(tmp_path / "ledger.pub")
        )
        assert code == 0 and "verified" in out, out
    path = tmp_path / "m" / "manifest.json"
    path.write_text(path.read_text().replace('"count": 0', '"count": 1'))
    code, out = fg(home, "audit", "verify-report", str(path), "--key", str(tmp_path / "ledger.pub"))
    assert code == 1 and "FAILED" in out


def test_a_link_in_the_out_folder_that_leads_out_of_it_is_refused_and_nothing_is_written(
    home: Path, tmp_path: Path
) -> None:
    """Files are written only inside --out: a link planted there (ca.pem -> a file elsewhere) is not followed."""
    out, victim = tmp_path / "aws", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    (out / "ca.pem").symlink_to(victim)
    code, text = fg(home, "handoff", "aws", "--ca", "issuing", "--registration-code", "c1" * 32, "--out", str(out))
    assert code == 3 and "output_path_unsafe" in text and "Traceback" not in text, text
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem"]
