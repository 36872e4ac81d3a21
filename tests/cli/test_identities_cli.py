"""``fabguard product identities``: declare a product's identity pools and show them, on a real instance."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fabguard.cli.main import app

runner = CliRunner()


def fg(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args], env={"COLUMNS": "200"}, catch_exceptions=False)
    return result.exit_code, result.output


def test_declare_show_and_refuse_a_bad_pool_without_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fg(home, "init", "--org", "Acme")[0] == 0
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    code, out = fg(home, "product", "identities", "sensor")
    assert code != 0 and "identity_pool_not_found" in " ".join(out.split()) and "Traceback" not in out
    code, out = fg(
        home,
        "product",
        "identities",
        "sensor",
        "--serial-prefix",
        "ACME-",
        "--require-allocated-serials",
        "--mac-prefix",
        "70-B3-D5-1",
        "--mac-per-unit",
        "2",
        "--matter-vendor-id",
        "65521",
        "--matter-product-id",
        "32768",
        "--json",
    )
    assert code == 0, out
    shown = json.loads(out)
    assert shown["serials"] == {"prefix": "ACME-", "width": 6, "check": "iso7064-mod-37-36", "required": True}
    assert shown["macs"]["assignment"] == "MA-M" and shown["macs"]["units"] == 2**20 // 2
    assert shown["matter"]["vendor_id"] == 65521 and shown["units_allocated"] == 0
    code, out = fg(home, "product", "identities", "sensor")
    assert code == 0 and "next serial 0" in out
    code, out = fg(home, "product", "identities", "sensor", "--mac-prefix", "00-1B")
    assert code != 0 and "invalid_mac_block" in " ".join(out.split()) and "Traceback" not in out
