"""`fabguard demo` runs the whole story on a fresh home and leaves verifiable output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_shows_every_defence_and_leaves_verifiable_certificates(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABGUARD_")}
    env["COLUMNS"] = "200"
    out = tmp_path / "out"
    fabguard = Path(sys.executable).parent / "fabguard"
    result = subprocess.run(
        [
            str(fabguard),
            "--home",
            str(tmp_path / "home"),
            "demo",
            "--units",
            "60",
            "--quota",
            "50",
            "--fixtures",
            "4",
            "--clones",
            "2",
            "--skip-tests",
            "2",
            "--wrong-site",
            "2",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ordered"] == 50 and summary["provisioned"] == 50
    assert summary["refused"]["key_reused"] == 2
    assert summary["refused"]["test_missing"] == 2
    assert summary["refused"]["wrong_site"] == 2
    assert summary["refused"]["quota_exhausted"] >= 1
    assert summary["attempted"] == summary["provisioned"] + sum(summary["refused"].values())
    certs = sorted((out / "certs").glob("*.pem"))
    assert len(certs) == 50
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(out / "ca" / "root.pem"),
            "-untrusted",
            str(out / "ca" / "issuing.pem"),
            *map(str, certs[:10]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The demo made its own passphrase file, readable by the owner only, and keys are encrypted.
    assert (tmp_path / "home" / "demo-passphrase").stat().st_mode & 0o077 == 0
    assert all("ENCRYPTED" in p.read_text() for p in (tmp_path / "home" / "keys").iterdir())

    # The README's field check, followed from the demo's output: the device keys are there, marked demo-only.
    keys = sorted((out / "demo-device-keys").glob("*.key.pem"))
    assert [k.name.removesuffix(".key.pem") for k in keys] == [c.stem for c in certs]
    assert all(k.stat().st_mode & 0o077 == 0 and k.read_text().startswith("DEMO ONLY") for k in keys)
    assert "DEMO ONLY" in (out / "demo-device-keys" / "README.txt").read_text()
    env["FABGUARD_KEY_PASSPHRASE_FILE"] = str(tmp_path / "home" / "demo-passphrase")

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=120, check=False)

    home = ("--home", tmp_path / "home")
    listed = run(fabguard, *home, "unit", "list", "--order", json.loads((out / "summary.json").read_text())["order_id"])
    assert listed.returncode == 0 and certs[0].stem in listed.stdout, listed.stdout + listed.stderr
    (tmp_path / "ledger.pub").write_text(run(fabguard, *home, "ledger", "key").stdout)
    assert run(fabguard, *home, "ledger", "export", tmp_path / "audit").returncode == 0
    nonce = "ab" * 32
    assert run(fabguard, "field", "message", "--nonce", nonce, "--out", tmp_path / "msg.bin").returncode == 0
    signed = run("openssl", "dgst", "-sha256", "-sign", keys[0], "-out", tmp_path / "sig.der", tmp_path / "msg.bin")
    assert signed.returncode == 0, signed.stderr
    check = run(
        fabguard, "field", "verify", "--export", tmp_path / "audit", "--key", tmp_path / "ledger.pub",
        "--cert", certs[0], "--signature", tmp_path / "sig.der", "--nonce", nonce,
    )  # fmt: skip
    assert check.returncode == 0 and '"genuine": true' in check.stdout, check.stdout + check.stderr

    again = subprocess.run(
        [str(fabguard), "--home", str(tmp_path / "home"), "order", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "demo-" in again.stdout
