"""``fabguard field ...``: a challenge signed by openssl with the device's key, checked on the instance
and offline from an export (exit 0 genuine, 1 not genuine or an export that does not verify, 2 bad input)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.authority import revocation
from fabguard.service.ledger import merkle_log
from tests.support import World, tested_device

runner = CliRunner()


def _run(home: Path, *args: str | Path) -> tuple[int, str]:
    result = runner.invoke(
        app, ["--home", str(home), *[str(a) for a in args]], env={"COLUMNS": "200"}, catch_exceptions=False
    )
    return result.exit_code, result.output


def _json(output: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(output[output.index("{") : output.rindex("}") + 1])
    return found


def _files(tmp: Path, device: SimulatedDevice) -> tuple[Path, Path]:
    key, cert = tmp / f"{device.serial}.key", tmp / f"{device.serial}.pem"
    key.write_bytes(
        device.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_text(device.certificate_pem or "")
    return key, cert


def _sign(home: Path, tmp: Path, key: Path, nonce: str) -> Path:
    """The device's answer made by openssl, from the bytes ``fabguard field message`` writes."""
    msg, sig = tmp / "msg.bin", tmp / "sig.der"
    assert _run(home, "field", "message", "--nonce", nonce, "--out", msg)[0] == 0
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, "-out", sig, msg], check=True, capture_output=True)
    return sig


@pytest.fixture
def line(world: World) -> tuple[World, SimulatedDevice, SimulatedDevice]:
    order = world.order(quota=5)
    fx = world.fixture("fx-cli")
    devices = []
    for serial in ("SN-C1", "SN-C2"):
        d = tested_device(fx, serial)
        d.certificate_pem = fx.provision(order, serial, d.csr_pem()).certificate_pem
        devices.append(d)
    revocation.revoke_unit(world.inst, "SN-C2", reason_code="key_compromise", note="recalled", actor="test")
    return world, devices[0], devices[1]


def test_a_device_answer_signed_by_openssl_is_genuine_once_on_the_instance_and_offline(
    line: tuple[World, SimulatedDevice, SimulatedDevice], tmp_path: Path
) -> None:
    world, good, revoked = line
    home = world.inst.home
    code, out = _run(home, "field", "challenge")
    assert code == 0, out
    nonce = _json(out)["nonce"]
    key, cert = _files(tmp_path, good)
    sig = _sign(home, tmp_path, key, nonce)
    code, out = _run(
        home, "field", "verify", "--cert", cert, "--signature", sig, "--nonce", nonce, "--source", "desk-1"
    )
    assert code == 0 and _json(out)["genuine"] is True and _json(out)["source"] == "desk-1", out
    code, out = _run(home, "field", "verify", "--cert", cert, "--signature", sig, "--nonce", nonce)
    assert code == 3 and "[nonce_used]" in out and "Traceback" not in out, out

    export = tmp_path / "export"
    assert _run(home, "ledger", "export", export)[0] == 0
    (tmp_path / "ledger.pub").write_text((export / "ledger.pub").read_text())
    offline = ("field", "verify", "--export", export, "--key", tmp_path / "ledger.pub")
    code, out = _run(home, *offline, "--cert", cert, "--signature", sig, "--nonce", nonce)
    assert code == 0 and _json(out)["genuine"] is True and _json(out)["offline"] is True, out
    rkey, rcert = _files(tmp_path, revoked)
    rsig = _sign(home, tmp_path, rkey, nonce)
    code, out = _run(home, *offline, "--cert", rcert, "--signature", rsig, "--nonce", nonce)
    assert code == 1 and _json(out)["reason"] == "unit_revoked" and "NOT genuine" in out, out
    code, out = _run(home, *offline, "--cert", cert, "--signature", rsig, "--nonce", nonce)
    assert code == 1 and _json(out)["reason"] == "signature_invalid", out


def test_an_export_that_does_not_verify_decides_nothing(
    line: tuple[World, SimulatedDevice, SimulatedDevice], tmp_path: Path
) -> None:
    world, good, _ = line
    export = tmp_path / "export"
    assert _run(world.inst.home, "ledger", "export", export)[0] == 0
    entries = export / "entries.jsonl"
    # Un-revoke SN-C2 in the export: the history no longer hashes to the signed checkpoints.
    entries.write_bytes(entries.read_bytes().replace(b'"kind":"unit.revoked"', b'"kind":"unit.reviewed"'))
    key, cert = _files(tmp_path, good)
    nonce = "11" * 32
    sig = _sign(world.inst.home, tmp_path, key, nonce)
    (tmp_path / "ledger.pub").write_text(merkle_log.public_verifier_key(world.inst))
    args = ("field", "verify", "--export", export, "--cert", cert, "--signature", sig, "--nonce", nonce)
    code, out = _run(world.inst.home, *args, "--key", tmp_path / "ledger.pub")
    assert code == 1 and "the export does not verify" in out and "{" not in out, out
    # Without the key the auditor kept, an export vouches for itself: refused before anything is decided.
    code, out = _run(world.inst.home, *args)
    assert code == 2 and "--export needs --key" in out, out


def test_bad_input_is_one_line_and_exit_code_2(
    line: tuple[World, SimulatedDevice, SimulatedDevice], tmp_path: Path
) -> None:
    world, good, _ = line
    _, cert = _files(tmp_path, good)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    sig = tmp_path / "sig.b64"
    sig.write_text(good.answer_challenge("22" * 32))
    for nonce, chain, expected in (("xyz", cert, "[nonce_invalid]"), ("22" * 32, junk, "[field_chain_invalid]")):
        for offline in ((), ("--export", tmp_path)):
            args = ("field", "verify", *offline, "--cert", chain, "--signature", sig, "--nonce", nonce)
            code, out = _run(world.inst.home, *args)
            lines = [x for x in out.splitlines() if x.strip()]
            assert code in (2, 3) and len(lines) == 1 and expected in lines[0], out
