"""A unit's genealogy as a PDF for a customer complaint or an auditor: its units and certificates, test
records step by step, decisions and refusals, firmware, field checks, licences, and the ledger entries
with the checkpoint their inclusion proofs end at (the JSON export carries the proofs themselves).

Made like the royalty statement (``service/royalties/statement_pdf.py``): fpdf2, imported where a PDF is
made, through ``service/ledger/reports``' document head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabguard.service.ledger.reports import latin1, pdf_document

if TYPE_CHECKING:
    from fpdf import FPDF  # imported where a PDF is made: fpdf is slow to import


def to_pdf(g: dict[str, Any], organization: str) -> bytes:
    checkpoint = g["ledger"]["checkpoint"] or {"size": "none signed yet", "root": "-", "note": ""}
    head = {
        "title": f"Unit {g['serial']}: genealogy",
        "organization": organization,
        "generated_at": g["generated_at"],
        "checkpoint": checkpoint,
    }
    scope = f"serial {g['serial']}" + (f", site {g['site_id']}" if g["site_id"] else ", every site")
    pdf = pdf_document(head, scope)
    _units(pdf, g)
    _records(pdf, g["test_records"])
    _events(pdf, "Provisioning decisions and refusals", g["decisions"])
    _events(pdf, "Firmware", g["firmware"])
    _heading(pdf, "Field checks")
    _row(pdf, (40, 30, 60, 0), ("at", "genuine", "reason / clone", "where"), bold=True)
    for c in g["field_checks"]:
        _row(
            pdf,
            (40, 30, 60, 0),
            (c["at"][:19], "yes" if c["genuine"] else "NO", f"{c['reason'] or '-'} / {c['clone'] or '-'}", c["place"]),
        )
    if not g["field_checks"]:
        _line(pdf, "None.")
    _heading(pdf, "Licences")
    for lic in g["licences"]:
        features = ", ".join((lic.get("licence") or {}).get("features") or [])
        _line(pdf, f"{lic.get('id')}: ledger entry {lic.get('ledger_entry')}; features {features or '-'}")
    if not g["licences"]:
        _line(pdf, "None.")
    _ledger(pdf, g)
    return bytes(pdf.output())


def _units(pdf: FPDF, g: dict[str, Any]) -> None:
    _heading(pdf, "Units and certificates")
    for u in g["units"]:
        made = u["made_by"]
        by = (
            f"site agent, lease {made['lease_id']}" if made["kind"] == "site_agent" else f"fixture {made['fixture_id']}"
        )
        cert = u["certificate"]
        revoked = f", revoked {cert['revoked_at'][:19]} ({cert['revocation_reason']})" if cert["revoked_at"] else ""
        _line(
            pdf,
            f"{u['product_id']} on order {u['order_id']} at site {u['site_id']}, made by {by}, issued {u['issued_at'][:19]}",
        )
        _line(pdf, f"  certificate {cert['serial']} by CA {u['issuing_ca']}{revoked}", mono=True)
        _line(pdf, f"  SHA-256 {cert['sha256']}", mono=True)
    for c in g["superseded_certificates"]:
        _line(pdf, f"superseded certificate {c['serial']} ({c['superseded_at'][:19]})", mono=True)
    if not g["units"]:
        _line(pdf, "Not provisioned.")


def _records(pdf: FPDF, records: list[dict[str, Any]]) -> None:
    _heading(pdf, "Test records")
    widths = (50, 55, 22, 0)
    for r in records:
        pdf.set_font("Helvetica", "B", 9)
        _line(
            pdf,
            f"Record {r['id']}: {r['outcome']} at {r['received_at'][:19]}, fixture {r['fixture_id']} (site {r['site_id']})",
        )
        _row(pdf, widths, ("step", "measurement", "outcome", "value [limits]"), bold=True)
        for step in r["steps"]:
            _row(pdf, widths, (step["phase"], "", step["outcome"], ""))
            for m in step["measurements"]:
                limits = f"[{_num(m['lower'])} .. {_num(m['upper'])}]"
                _row(pdf, widths, ("", m["name"], m["outcome"], f"{_num(m['value'])} {limits}"))
        pdf.ln(2)
    if not records:
        _line(pdf, "No test records.")


def _events(pdf: FPDF, title: str, entries: list[dict[str, Any]]) -> None:
    _heading(pdf, title)
    widths = (18, 40, 40, 36, 0)
    _row(pdf, widths, ("entry", "at", "kind", "code", "actor"), bold=True)
    for e in entries:
        _row(pdf, widths, (str(e["index"]), e["at"][:19], e["kind"], e["code"] or "-", e["actor"] or "-"))
    if not entries:
        _line(pdf, "None.")


def _ledger(pdf: FPDF, g: dict[str, Any]) -> None:
    _heading(pdf, "Ledger")
    entries = g["ledger"]["entries"]
    proven = sum(1 for e in entries if e["inclusion"]["checkpointed"])
    _line(
        pdf,
        f"{len(entries)} ledger entries name this serial; {proven} are covered by the signed checkpoint below. "
        "Their inclusion proofs (RFC 9162) are in the JSON export; check each against the checkpoint's root, "
        "and the checkpoint's signature with the verifier key below.",
    )
    note = (g["ledger"]["checkpoint"] or {}).get("note") or "No checkpoint signed yet."
    pdf.set_font("Courier", "", 8)
    pdf.multi_cell(0, 4, latin1(note.replace("\u2014", "--")), new_x="LMARGIN", new_y="NEXT")
    _line(pdf, f"Ledger verifier key: {g['ledger']['verifier_key']}", mono=True)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _heading(pdf: FPDF, title: str) -> None:
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)


def _line(pdf: FPDF, text: str, *, mono: bool = False) -> None:
    pdf.set_font("Courier" if mono else "Helvetica", "", 8 if mono else 9)
    pdf.multi_cell(0, 5, latin1(text), new_x="LMARGIN", new_y="NEXT")


def _row(pdf: FPDF, widths: tuple[int, ...], cells: tuple[str, ...], *, bold: bool = False) -> None:
    pdf.set_font("Helvetica", "B" if bold else "", 8)
    for i, (w, text) in enumerate(zip(widths, cells, strict=True)):
        last = i == len(cells) - 1
        clipped = latin1(text)[: max(4, int((w or 60) / 1.6))]
        pdf.cell(w, 5, clipped, border="B", new_x="LMARGIN" if last else "RIGHT", new_y="NEXT" if last else "TOP")
