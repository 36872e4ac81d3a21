"""Reconciliation reports: figures agree with the books, every listed serial points at its ledger entry,
an auditor recomputes the same figures from an export, and the signatures hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.ledger.entry import decode_entry
from fabguard.ledger.reconcile import Scope, reconcile
from fabguard.ledger.verify import AuditFailure, verify_report
from fabguard.service.catalog import orders
from fabguard.service.ledger import merkle_log, reports
from fabguard.store.models import Event
from tests.support import World


@pytest.fixture
def run(world: World) -> tuple[World, str]:
    order = world.order(quota=12)
    creds = [world.credentials(f"fx-{i}") for i in range(2)]
    stray = world.credentials("fx-b", site="cm-b")
    config = LineConfig(order_id=order, units=16, fail_rate=0.3, clones=2, skip_tests=2, wrong_site_attempts=2)
    with ProductionLine(creds, config, wrong_site=stray) as line:
        line.run()
    return world, order


def entries_of(world: World) -> dict[int, dict[str, object]]:
    with world.inst.db.read() as s:
        return {seq - 1: decode_entry(bytes(e)) for seq, e in s.execute(select(Event.seq, Event.entry)).all()}


def test_order_report_matches_the_books_and_points_at_its_evidence(run: tuple[World, str]) -> None:
    world, order = run
    rep = reports.reconciliation_report(world.inst, order_id=order, sign_checkpoint=True)
    figures, evidence = rep.body["figures"], rep.body["evidence"]
    view = orders.get_order(world.inst, order)

    assert figures["ordered"] == 12 and figures["provisioned"] == view.used == 12
    assert figures["refused"] == view.refused and figures["refused"]["key_reused"] == 2
    assert figures["remaining"] == 0
    assert figures["exceptions"]["provisioned_without_a_passing_test"] == []
    assert figures["tested"]["retests"] == figures["tested"]["records"] - figures["tested"]["units"]
    entries = entries_of(world)
    for row in evidence["provisioned"]:
        e = entries[row["entry"]]
        assert (e["kind"], e["serial"], e["order_id"]) == ("unit.provisioned", row["serial"], order)
    for row in evidence["refused"]:
        e = entries[row["entry"]]
        assert (e["kind"], e["code"]) == ("unit.refused", row["code"])
    for row in evidence["tests"]:
        e = entries[row["entry"]]
        assert e["kind"] == "test.recorded" and e["serial"] == row["serial"]
    assert rep.body["checkpoint"]["size"] == len(entries)


def test_auditor_recomputes_the_same_figures_from_an_export(run: tuple[World, str], tmp_path: Path) -> None:
    world, order = run
    rep = reports.reconciliation_report(world.inst, order_id=order, sign_checkpoint=True)
    merkle_log.export(world.inst, tmp_path / "export")
    lines = (tmp_path / "export" / "entries.jsonl").read_bytes().splitlines()
    recomputed = reconcile((decode_entry(line) for line in lines[: rep.body["tree_size"]]), Scope(order_id=order))
    assert recomputed.figures() == rep.body["figures"]


def test_site_scope_leaves_out_the_other_sites_attempts(run: tuple[World, str]) -> None:
    world, _ = run
    at_a = reports.reconciliation_report(world.inst, site_id="cm-a", sign_checkpoint=True).body["figures"]
    at_b = reports.reconciliation_report(world.inst, site_id="cm-b", sign_checkpoint=True).body["figures"]
    assert "wrong_site" not in at_a["refused"]
    assert at_b["refused"] == {"wrong_site": 2} and at_b["provisioned"] == 0 and at_b["ordered"] == 0


def test_signed_report_verifies_and_any_change_is_caught(run: tuple[World, str], tmp_path: Path) -> None:
    world, order = run
    rep = reports.reconciliation_report(world.inst, order_id=order, sign_checkpoint=True)
    key = merkle_log.public_verifier_key(world.inst)
    path = tmp_path / "report.json"
    path.write_text(reports.report_json(rep))
    verify_report(path, key)
    doc = json.loads(path.read_text())
    doc["report"]["figures"]["provisioned"] = 11
    path.write_text(json.dumps(doc))
    with pytest.raises(AuditFailure, match="does not verify"):
        verify_report(path, key)

    pdf = reports.to_pdf(rep)
    assert pdf.startswith(b"%PDF-")
    (tmp_path / "report.pdf").write_bytes(pdf)
    (tmp_path / "report.pdf.sig").write_text(reports.sign_bytes(world.inst, pdf))
    verify_report(tmp_path / "report.pdf", key)
    mid = len(pdf) // 2
    (tmp_path / "report.pdf").write_bytes(pdf[:mid] + bytes([pdf[mid] ^ 1]) + pdf[mid + 1 :])
    with pytest.raises(AuditFailure):
        verify_report(tmp_path / "report.pdf", key)


def test_report_api_serves_json_csv_and_pdf_and_refuses_unknown_scopes(run: tuple[World, str]) -> None:
    world, order = run
    with world.admin() as http:
        taken = http.post("/api/v1/ledger/checkpoint").json()  # the GET binds to a stored checkpoint, signs none
        body = http.get("/api/v1/reports/reconciliation", params={"order_id": order}).json()
        assert body["report"]["figures"]["provisioned"] == 12 and body["signature"]
        assert body["report"]["checkpoint"]["size"] >= taken["size"]
        csv_r = http.get("/api/v1/reports/reconciliation", params={"order_id": order, "format": "csv"})
        assert csv_r.headers["content-type"].startswith("text/csv") and csv_r.headers["x-fabguard-signature"]
        assert csv_r.text.count("\nprovisioned,") == 12
        pdf_r = http.get("/api/v1/reports/reconciliation", params={"order_id": order, "format": "pdf"})
        assert pdf_r.content.startswith(b"%PDF-")
        missing = http.get("/api/v1/reports/reconciliation", params={"order_id": "po-none"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "order_not_found"
        bad = http.get("/api/v1/reports/reconciliation", params={"format": "docx"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_format"
