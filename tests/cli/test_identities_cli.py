"""``fabguard product identities``: declare a product's identity pools and show them, on a real instance."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, OrderId, SiteId
from fabguard.service.catalog import fixtures
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.allocation import Allocated, allocate_unit
from tests.labels.test_pdf import _pages, _qr, _tools

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


def test_order_labels_print_each_allocated_units_qr_code(tmp_path: Path) -> None:
    _tools()
    home = tmp_path / "home"
    assert fg(home, "init", "--org", "Acme")[0] == 0
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    assert fg(home, "site", "add", "cm-a", "--name", "CM A")[0] == 0
    assert fg(home, "order", "create", "--id", "po-1", "--product", "sensor", "--site", "cm-a", "--quota", "5")[0] == 0
    code, out = fg(
        home, "product", "identities", "sensor", "--serial-prefix", "LB-", "--mac-prefix", "00-1B-63",
        "--matter-vendor-id", "65521", "--matter-product-id", "32768", "--matter-iterations", "1000",
    )  # fmt: skip
    assert code == 0, out
    inst = Instance.open(home)
    try:
        fixtures.create_fixture(inst, fixture_id=FixtureId("fx-1"), site_id=SiteId("cm-a"), actor="test")
        given = [allocate_unit(inst, FixtureFacts("fx-1", "cm-a", False), OrderId("po-1"), None) for _ in range(2)]
    finally:
        inst.close()
    codes = [g.to_dict()["matter"]["qr_code"] for g in given if isinstance(g, Allocated)]  # type: ignore[index]

    code, out = fg(home, "order", "labels", "po-1", "--out", str(tmp_path / "labels.pdf"))
    assert code == 0 and "2 labels" in out, out
    assert [_qr(p) for p in _pages((tmp_path / "labels.pdf").read_bytes(), tmp_path)] == codes
    code, out = fg(home, "order", "labels", "po-1", "--format", "zpl", "--out", str(tmp_path / "labels.zpl"))
    zpl = (tmp_path / "labels.zpl").read_text()
    assert code == 0 and zpl.count("^XA") == 2 and all(c in zpl for c in codes)
    code, out = fg(home, "order", "labels", "po-1", "--out", str(tmp_path / "labels.zpl"))
    assert code != 0 and "exists" in out and "Traceback" not in out
