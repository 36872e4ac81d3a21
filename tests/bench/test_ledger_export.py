"""bench/ledger.py's export of units is one the verifier checks as it checks a real one: every unit's
certificate file verifies against its entry and chains to the CA, and an altered file fails."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fabguard.ledger.verify import AuditFailure, verify_export

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ledger.py"


@pytest.fixture(scope="module")
def ledger_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ledger", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ledger"] = module
    spec.loader.exec_module(module)
    return module


def test_the_bench_export_of_units_verifies_and_an_altered_file_fails(ledger_bench: ModuleType, tmp_path: Path) -> None:
    vkey = ledger_bench.write_export(tmp_path / "export", 101, units=True)
    report = verify_export(tmp_path / "export", verifier=vkey)
    assert (report.entries, report.certificates_checked, report.checkpoints_checked) == (101, 50, 2)
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert len(manifest["certificate_files"]) == 50
    first, second = sorted((tmp_path / "export" / "certs").glob("*.pem"))[:2]
    first.write_bytes(second.read_bytes())
    with pytest.raises(AuditFailure, match=rf"certs/{first.name} holds the certificate of unit {second.stem}"):
        verify_export(tmp_path / "export", verifier=vkey)
