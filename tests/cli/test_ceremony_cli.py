"""``fabguard init --offline-root``, ``fabguard ceremony ...`` and ``init --import-ceremony`` from the command
line, as docs/ceremony.md walks them: the air-gapped commands in a directory of their own, the server's on
its instance; pkilint and OpenSSL check what the ceremony signed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tests.cli.test_cli import fg

ORG = "Acme Devices"
BIN = Path(sys.executable).parent


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def ceremony_done(tmp_path: Path) -> tuple[Path, Path]:
    """(the instance's home, the ceremony's root directory) after the first ceremony."""
    home, root = tmp_path / "home", tmp_path / "air-gapped" / "root"
    code, out = fg(home, "init", "--org", ORG, "--offline-root", str(tmp_path / "request"))
    assert code == 0 and "Ceremony request written" in out and "Admin API token" in out, out
    air = tmp_path / "air-gapped" / "no-instance"  # the ceremony machine has no instance
    code, out = fg(air, "ceremony", "new-root", str(root), "--org", ORG)
    assert code == 0 and "SHA-256 fingerprint" in out, out
    code, out = fg(
        air, "ceremony", "sign", str(tmp_path / "request"), "--root", str(root), "--out", str(tmp_path / "signed")
    )
    assert code == 0 and "issuing: issuing-ca" in out and "station: station-ca" in out, out
    assert not air.exists()
    code, out = fg(home, "init", "--import-ceremony", str(tmp_path / "signed"))
    assert code == 0 and "Ceremony imported" in out, out
    return home, root


def test_the_first_ceremony_from_the_command_line_gives_certificates_pkilint_and_openssl_accept(
    ceremony_done: tuple[Path, Path], tmp_path: Path
) -> None:
    home, root = ceremony_done
    code, out = fg(home, "ca", "list", "--json")
    assert code == 0 and '"name": "root"' in out and '"key": "external"' in out, out
    ca = home / "ca"
    for name in ("root", "issuing", "station", "server"):
        result = run(BIN / "lint_pkix_cert", "lint", "-s", "ERROR", ca / f"{name}.pem")
        assert result.returncode == 0 and "(ERROR)" not in result.stdout, f"{name}:\n{result.stdout}{result.stderr}"
    for issuer, name in (("root", "issuing"), ("root", "station"), ("station", "server")):
        result = run(
            BIN / "lint_pkix_signer_signee_cert_chain", "lint", "-s", "ERROR", ca / f"{issuer}.pem", ca / f"{name}.pem"
        )
        assert result.returncode == 0, f"{issuer} -> {name}:\n{result.stdout}{result.stderr}"
    der, crl = tmp_path / "root.crl", tmp_path / "root.crl.pem"
    assert fg(home, "ca", "crl", "root", "--out", str(der))[0] == 0
    assert run("openssl", "crl", "-inform", "DER", "-in", der, "-out", crl).returncode == 0
    result = run("openssl", "verify", "-x509_strict", "-crl_check", "-CRLfile", crl,
                 "-CAfile", root / "root.pem", ca / "issuing.pem")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_later_ceremonies_add_an_issuing_ca_and_renew_the_root_crl(
    ceremony_done: tuple[Path, Path], tmp_path: Path
) -> None:
    home, root = ceremony_done
    air = tmp_path / "air"
    code, out = fg(home, "ceremony", "add-issuer", "line-2", "--out", str(tmp_path / "r2"))
    assert code == 0 and "manifest SHA-256" in out, out
    code, out = fg(air, "ceremony", "sign", str(tmp_path / "r2"), "--root", str(root), "--out", str(tmp_path / "s2"))
    assert code == 0 and "line-2: issuing-ca" in out and "root CRL number 2" in out, out
    code, out = fg(home, "ceremony", "import", str(tmp_path / "s2"))
    assert code == 0 and "line-2" in out, out
    assert "active" in fg(home, "ca", "list")[1]

    assert fg(home, "ceremony", "request", "--out", str(tmp_path / "r3"))[0] == 0
    code, out = fg(
        air,
        "ceremony",
        "crl",
        str(tmp_path / "r3"),
        "--root",
        str(root),
        "--out",
        str(tmp_path / "s3"),
        "--crl-days",
        "30",
    )
    assert code == 0 and "0 certificate(s), root CRL number 3" in out, out
    assert fg(home, "ceremony", "import", str(tmp_path / "s3"))[0] == 0
    code, out = fg(home, "ca", "crl", "root")
    assert code == 0 and "number 3" in out, out
    crl = x509.load_der_x509_crl((tmp_path / "s3" / "root.crl").read_bytes())
    assert crl.next_update_utc is not None and (crl.next_update_utc - crl.last_update_utc).days == 30

    code, out = fg(home, "ceremony", "import", str(tmp_path / "s2"))  # a bundle imported already
    assert code == 3 and "[ca_not_pending]" in out and "Traceback" not in out, out
    code, out = fg(home, "ceremony", "import", str(tmp_path / "s3"))
    assert code == 3 and "[crl_invalid]" in out, out


def test_ceremony_mistakes_are_one_line_with_their_code(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fg(home, "init", "--org", ORG)[0] == 0  # the old way: the root key is on the server
    code, out = fg(home, "ceremony", "request", "--out", str(tmp_path / "r"))
    assert code == 3 and "[root_not_offline]" in out, out
    code, out = fg(home, "ceremony", "import", str(tmp_path / "nothing"))
    assert code == 3 and "[ceremony_bundle_invalid]" in out, out
    code, out = fg(tmp_path / "other", "init")
    assert code == 3 and "--org" in out, out


def test_an_offline_root_instance_backs_up_and_restores(ceremony_done: tuple[Path, Path], tmp_path: Path) -> None:
    home, _ = ceremony_done
    assert fg(home, "backup", "--out", str(tmp_path / "b"))[0] == 0
    code, out = fg(home, "restore", str(tmp_path / "b"), "--home", str(tmp_path / "restored"))
    assert code == 0, out
    code, out = fg(tmp_path / "restored", "ca", "crl", "root")
    assert code == 0 and "number 1" in out, out
    code, out = fg(tmp_path / "restored", "doctor", "--offline")
    assert "the root's is offline" in out and "offline root's CRL (number 1)" in out, out


def test_a_matter_pai_from_its_paa_ceremony_on_the_command_line(
    ceremony_done: tuple[Path, Path], tmp_path: Path
) -> None:
    home, _ = ceremony_done
    air, paa = tmp_path / "air", tmp_path / "air-gapped" / "paa"
    code, out = fg(air, "ceremony", "new-root", str(paa), "--org", ORG, "--matter-vid", "FFF1")
    assert code == 0 and "CN=Acme Devices Matter PAA FFF1" in out, out
    assert fg(home, "product", "add", "bulb", "--name", "Bulb")[0] == 0
    code, out = fg(home, "ca", "create-matter-pai", "bulb-pai", "--product", "bulb", "--vid", "FFF1", "--pid", "8000")
    assert code == 3 and "[ca_key_offline]" in out, out
    args = ["--product", "bulb", "--vid", "FFF1", "--pid", "8000", "--out", str(tmp_path / "r")]
    assert fg(home, "ceremony", "add-matter-pai", "bulb-pai", *args)[0] == 0
    code, out = fg(air, "ceremony", "sign", str(tmp_path / "r"), "--root", str(paa), "--out", str(tmp_path / "s"))
    assert code == 0 and "bulb-pai: matter-pai" in out, out
    code, out = fg(home, "ceremony", "import", str(tmp_path / "s"))
    assert code == 0 and "bulb-pai" in out, out
    code, out = fg(home, "ca", "list", "--json")
    assert '"name": "matter-paa-fff1", "role": "paa", "state": "active"' in out and '"key": "external"' in out, out
    assert fg(home, "ceremony", "request", "--for", "matter-paa-fff1", "--out", str(tmp_path / "r2"))[0] == 0
    code, out = fg(air, "ceremony", "crl", str(tmp_path / "r2"), "--root", str(paa), "--out", str(tmp_path / "s2"))
    assert code == 0 and "root CRL number 2" in out, out
    assert fg(home, "ceremony", "import", str(tmp_path / "s2"))[0] == 0
    code, out = fg(home, "ca", "crl", "matter-paa-fff1")
    assert code == 0 and "number 2" in out, out


def test_a_licence_signer_from_the_root_ceremony_on_the_command_line(
    ceremony_done: tuple[Path, Path], tmp_path: Path
) -> None:
    home, root = ceremony_done
    air = tmp_path / "air"
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    code, out = fg(home, "licence", "rotate-signer", "sensor")
    assert code == 3 and "[ca_key_offline]" in out and "ceremony add-licence-signer sensor" in out, out
    code, out = fg(home, "ceremony", "add-licence-signer", "sensor", "--out", str(tmp_path / "r"))
    assert code == 0 and "manifest SHA-256" in out, out
    code, out = fg(home, "licence", "signers", "sensor")
    assert code == 0 and "pending" in out, out
    code, out = fg(air, "ceremony", "sign", str(tmp_path / "r"), "--root", str(root), "--out", str(tmp_path / "s"))
    assert code == 0 and "licence-signer.sensor.1: licence-signer" in out and "CN=sensor licences" in out, out
    code, out = fg(home, "ceremony", "import", str(tmp_path / "s"))
    assert code == 0 and "Licence signer 1 of sensor signs from now on" in out, out
    code, out = fg(home, "licence", "signers", "sensor")
    assert code == 0 and "signing" in out and "pending" not in out, out
    code, out = fg(home, "ceremony", "add-licence-signer", "nosuch", "--out", str(tmp_path / "r2"))
    assert code == 3 and "[product_not_found]" in out and "Traceback" not in out, out
