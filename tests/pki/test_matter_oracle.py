"""esp-matter-mfg-tool as the oracle of FabGuard's Matter onboarding data.

The tool (installed by scripts/setup in ``.venv-oracle``, apart from the project's venv: it pins an old
``cryptography``) writes, for a passcode and discriminator, the QR code, the manual code and, with its
own random salt, the SPAKE2+ verifier. Two directions:

- the tool picks the salt: FabGuard's verifier for that salt and iteration count must be the tool's;
- FabGuard picks everything: the tool, given our salt and verifier, recomputes the verifier itself and
  refuses to run if it differs, and writes the codes, which must be ours.

On the CHIP SDK's test values and on random ones (flows, discovery bits, iteration counts, salt lengths).
"""

from __future__ import annotations

import base64
import csv
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabguard.pki.matter import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    ProductId,
    SetupPasscode,
    Spake2pParameters,
    VendorId,
    spake2p_verifier,
)
from fabguard.pki.matter.onboarding import INVALID_PASSCODES

REPO = Path(__file__).resolve().parents[2]


def _tool() -> str:
    for candidate in (
        os.environ.get("FABGUARD_ESP_MATTER_MFG_TOOL"),
        str(REPO / ".venv-oracle" / "bin" / "esp-matter-mfg-tool"),
        shutil.which("esp-matter-mfg-tool"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    message = "esp-matter-mfg-tool is not installed (scripts/setup makes .venv-oracle)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class ToolOutput:
    qr_code: str
    manual_code: str
    salt: bytes
    iterations: int
    verifier: bytes


def _run(
    out: Path,
    payload: OnboardingPayload,
    *,
    iterations: int = 10000,
    ours: tuple[bytes, bytes] | None = None,
) -> ToolOutput:
    """Run the tool offline for one unit; ``ours`` = (salt, verifier) hands it FabGuard's."""
    args = [
        _tool(),
        "-v", f"0x{payload.vendor_id.value:04X}",
        "-p", f"0x{payload.product_id.value:04X}",
        "--passcode", str(payload.passcode.value),
        "--discriminator", str(payload.discriminator.value),
        "-cf", str(int(payload.flow)),
        "-dm", str(int(payload.discovery)),
        "--iteration-count", str(iterations),
        "--no-bin", "--no-secure-cert-bin", "--target", "esp32", "--outdir", str(out),
    ]  # fmt: skip
    if ours is not None:
        args += ["--salt", base64.b64encode(ours[0]).decode(), "--verifier", base64.b64encode(ours[1]).decode()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=out.parent)
    assert done.returncode == 0, f"esp-matter-mfg-tool refused: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    (codes_file,) = out.rglob("*-onb_codes.csv")
    (partition_file,) = out.rglob("internal/partition.csv")
    with codes_file.open(newline="") as f:
        (codes,) = list(csv.DictReader(f))
    with partition_file.open(newline="") as f:
        data = {row["key"]: row["value"] for row in csv.DictReader(f)}
    return ToolOutput(
        qr_code=codes["qrcode"],
        manual_code=re.sub(r"\D", "", codes["manualcode"]),  # a 21-digit code comes quoted, on two lines
        salt=base64.b64decode(data["salt"]),
        iterations=int(data["iteration-count"]),
        verifier=base64.b64decode(data["verifier"]),
    )


def test_the_chip_test_values_give_the_tools_codes_and_its_verifier(tmp_path: Path) -> None:
    payload = OnboardingPayload(VendorId(0xFFF2), ProductId(0x8001), Discriminator(3840), SetupPasscode(20202021))
    tool = _run(tmp_path / "out", payload)
    assert tool.qr_code == payload.qr_code() == "MT:634J042C00KA0648G00"
    assert tool.manual_code == payload.manual_code() == "34970112332"
    assert payload.manual_code_grouped() == "3497-011-2332"
    # The tool chose the salt; our verifier for its salt is its verifier.
    assert spake2p_verifier(payload.passcode, Spake2pParameters(tool.salt, tool.iterations)) == tool.verifier


def _random_payload(rng: random.Random) -> OnboardingPayload:
    passcode = rng.randint(1, 99999998)
    while passcode in INVALID_PASSCODES:
        passcode = rng.randint(1, 99999998)
    return OnboardingPayload(
        VendorId(rng.randint(1, 0xFFF4)),
        ProductId(rng.randint(1, 0xFFFF)),
        Discriminator(rng.randint(0, 4095)),
        SetupPasscode(passcode),
        flow=rng.choice(list(CommissioningFlow)),
        discovery=DiscoveryCapability(rng.randrange(2, 64, 2)),  # any non-empty set of the 5 defined bits
    )


SEED = int(os.environ.get("FABGUARD_ORACLE_SEED", random.SystemRandom().randrange(2**32)))


@pytest.mark.parametrize("case", range(8))
def test_random_units_agree_with_the_tool(case: int, tmp_path: Path) -> None:
    rng = random.Random(SEED * 100 + case)
    payload = _random_payload(rng)
    iterations = rng.choice([1000, rng.randint(1000, 20000), 100000])
    context = f"seed {SEED} case {case}: {payload} iterations {iterations}"
    if case % 2:
        # FabGuard picks the salt: the tool recomputes the verifier and runs only if it is ours.
        parameters = Spake2pParameters(rng.randbytes(rng.randint(16, 32)), iterations)
        ours = spake2p_verifier(payload.passcode, parameters)
        tool = _run(tmp_path / "out", payload, iterations=iterations, ours=(parameters.salt, ours))
        assert (tool.salt, tool.iterations, tool.verifier) == (parameters.salt, iterations, ours), context
    else:
        tool = _run(tmp_path / "out", payload, iterations=iterations)
        assert tool.iterations == iterations, context
        assert spake2p_verifier(payload.passcode, Spake2pParameters(tool.salt, iterations)) == tool.verifier, context
    assert tool.qr_code == payload.qr_code(), context
    assert tool.manual_code == payload.manual_code(), context


def test_the_tool_refuses_a_verifier_that_is_not_the_passcodes(tmp_path: Path) -> None:
    """The other direction's check has teeth: a verifier for another passcode does not pass."""
    payload = OnboardingPayload(VendorId(0xFFF2), ProductId(0x8001), Discriminator(3840), SetupPasscode(20202021))
    parameters = Spake2pParameters(b"\x01" * 32, 1000)
    wrong = spake2p_verifier(SetupPasscode(20202022), parameters)
    with pytest.raises(AssertionError, match="refused"):
        _run(tmp_path / "out", payload, iterations=1000, ours=(parameters.salt, wrong))
