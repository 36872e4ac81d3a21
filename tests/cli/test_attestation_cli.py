"""``fabguard product attestation / trust-root / distrust-root`` on a real instance directory."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from fabguard.cli.main import app
from tests.tpm_support import TestCa

runner = CliRunner()


def fg(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args], env={"COLUMNS": "200"}, catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def test_a_product_trusts_a_root_requires_attestation_and_lets_the_root_go(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fg(home, "init", "--org", "Acme")[0] == 0
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    root = tmp_path / "maker.pem"
    ca = TestCa.make("Test TPM maker AK CA")
    root.write_text(ca.pem)

    code, out = fg(home, "product", "trust-root", "sensor", str(root), "--kind", "tpm")
    assert code == 0 and "CN=Test TPM maker AK CA" in out
    code, out = fg(home, "product", "attestation", "sensor", "--policy", "required")
    assert code == 0 and "attestation required" in out and "CN=Test TPM maker AK CA" in out
    digest = re.findall(r"\b[0-9a-f]{64}\b", out)[0]

    code, out = fg(home, "product", "attestation", "sensor", "--policy", "sometimes")
    assert code != 0 and "off, optional, required" in out and "Traceback" not in out
    code, out = fg(home, "product", "trust-root", "sensor", str(tmp_path / "absent.pem"), "--kind", "tpm")
    assert code != 0 and "cannot read" in out and "Traceback" not in out
    assert fg(home, "product", "distrust-root", "sensor", digest)[0] == 0
    code, out = fg(home, "product", "distrust-root", "sensor", digest)
    assert code != 0 and "attestation_root_not_found" in out
