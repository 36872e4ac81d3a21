"""``fabguard compliance export``: a product without its CRA facts is refused by name, unless
``--allow-incomplete``, which the signed index records and ``fabguard audit verify`` reports as a note."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import fg, home  # noqa: F401  (the fixture)


def test_export_refuses_an_incomplete_product_then_records_the_flag(home: Path, tmp_path: Path) -> None:  # noqa: F811
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    code, out = fg(home, "compliance", "export", str(tmp_path / "pack"))
    assert code == 3 and "sensor" in out and "support_until" in out and "--allow-incomplete" in out, out
    assert "Traceback" not in out and not (tmp_path / "pack").exists()
    code, out = fg(home, "compliance", "export", str(tmp_path / "pack"), "--allow-incomplete")
    assert code == 0 and "incomplete" in out, out
    index = json.loads((tmp_path / "pack" / "index.json").read_text())
    assert index["incomplete"]["products"] == {"sensor": ["support_until", "vulnerability_contact"]}
    _, key = fg(home, "ledger", "key")
    (tmp_path / "key.pub").write_text(key)
    code, out = fg(home, "audit", "verify", str(tmp_path / "pack"), "--key", str(tmp_path / "key.pub"))
    assert code == 0 and "verified" in out and "note:" in out and "--allow-incomplete" in out, out
