"""An ESP32 Matter factory data partition from what FabGuard gave a unit, made by esp-matter-mfg-tool.

The tool (Espressif's ``esp-matter-mfg-tool``, PyPI) is run as a separate program: it pins an old
``cryptography`` and installs top-level packages of its own, so it lives in a venv of its own and this
package never imports it. It is handed the unit's own data: the vendor and product IDs, passcode,
discriminator, commissioning flow and discovery bits, FabGuard's SPAKE2+ salt, iteration count and
verifier (the tool recomputes the verifier and refuses a wrong one), the DAC FabGuard issued, its PAI (the
chain's first certificate), the DAC's private key and, if given, the certification declaration; and the
serial. It writes the NVS partition binary the line flashes at the factory-data offset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOL_ENV = "FABGUARD_ESP_MATTER_MFG_TOOL"
TOOL_NAME = "esp-matter-mfg-tool"
_PEM_END = "-----END CERTIFICATE-----"


class PartitionError(Exception):
    """The tool is missing, or refused the unit's data (its output says why)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class Partition:
    binary: Path  # the NVS partition image to flash
    csv: Path  # the tool's own record of the keys and values it wrote


def find_tool(given: str | None) -> str:
    """``--tool``, else ``$FABGUARD_ESP_MATTER_MFG_TOOL``, else ``esp-matter-mfg-tool`` on the PATH."""
    for candidate in (given, os.environ.get(TOOL_ENV), shutil.which(TOOL_NAME)):
        if candidate and Path(candidate).is_file():
            return candidate
    raise PartitionError(
        f"{TOOL_NAME} not found: install it (in a venv of its own: it pins cryptography 44) and give --tool "
        f"or ${TOOL_ENV}",
        missing=True,
    )


def first_certificate(chain_pem: str) -> str:
    """The first PEM certificate of a chain file (the PAI, in the chain FabGuard answers)."""
    end = chain_pem.find(_PEM_END)
    if end < 0:
        raise PartitionError("the chain holds no PEM certificate")
    return chain_pem[: end + len(_PEM_END)].strip() + "\n"


def tool_arguments(
    identity: dict[str, Any], dac: Path, dac_key: Path, pai: Path, cd: Path | None, target: str, out: Path
) -> list[str]:
    """The tool's options for one unit (no secure-cert partition: DAC and key go into the NVS partition)."""
    m = identity.get("matter")
    if not isinstance(m, dict):
        raise PartitionError(
            f"unit {identity.get('serial')} has no Matter onboarding data (its product has no Matter pool)"
        )
    args = [
        "-v", f"0x{int(m['vendor_id']):04X}",
        "-p", f"0x{int(m['product_id']):04X}",
        "--passcode", str(int(m["passcode"])),
        "--discriminator", str(int(m["discriminator"])),
        "-cf", str(int(m["flow"])),
        "-dm", str(int(m["discovery"])),
        "--salt", str(m["salt"]),
        "--verifier", str(m["verifier"]),
        "--iteration-count", str(int(m["iterations"])),
        "--dac-cert", str(dac),
        "--dac-key", str(dac_key),
        "-c", str(pai),
        "--pai",
        "--serial-num", str(identity["serial"]),
        "--no-secure-cert-bin",
        "--target", target,
        "--outdir", str(out),
    ]  # fmt: skip
    if cd is not None:
        args += ["-cd", str(cd)]
    return args


def make_partition(
    tool: str,
    identity: dict[str, Any],
    *,
    dac: Path,
    chain: Path,
    dac_key: Path,
    cd: Path | None,
    out: Path,
    target: str = "esp32",
    timeout: float = 300,
) -> Partition:
    """Run the tool for one unit into ``out``; the partition binary and the tool's CSV of what it holds."""
    out.mkdir(parents=True, exist_ok=True)
    pai = out / "pai.pem"
    pai.write_text(first_certificate(chain.read_text()))
    before = set(out.rglob("*.bin"))
    done = subprocess.run(
        [tool, *tool_arguments(identity, dac, dac_key, pai, cd, target, out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=out,
        check=False,
    )
    if done.returncode != 0:
        raise PartitionError(f"{TOOL_NAME} refused: {(done.stdout + done.stderr)[-1500:].strip()}")
    made = sorted(set(out.rglob("*-partition.bin")) - before)
    if len(made) != 1:
        raise PartitionError(f"{TOOL_NAME} wrote {len(made)} partition binaries, not one: {done.stdout[-500:]}")
    (record,) = made[0].parent.rglob("internal/partition.csv")
    return Partition(made[0], record)
