"""Reconciliation reports, computed at a signed checkpoint from the ledger entries it covers.

The API's report binds to the newest stored checkpoint and writes nothing (a GET); the command line
signs a checkpoint of the whole tree first (``sign_checkpoint``: the operator's act).

Each report says which checkpoint it was computed at (size, root, the signed note) and is itself
signed with the ledger key, so a contract auditor can check both the figures (recompute them from an
export with ``fabguard.ledger.reconcile``) and that FabGuard issued the report.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from fabguard.domain.errors import InvalidRequest, NotFound
from fabguard.ledger.entry import canonical_json, decode_entry, format_time
from fabguard.ledger.reconcile import Reconciliation, Scope, reconcile
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.store.models import Event, Order, Site

if TYPE_CHECKING:
    from fpdf import FPDF  # imported where a PDF is made: fpdf is slow to import


@dataclass(frozen=True)
class Report:
    body: dict[str, Any]  # the signed JSON document; its readers (CLI, PDF) index into it
    signature: str  # base64 Ed25519 over canonical_json(body), by the ledger key
    reconciliation: Reconciliation

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.body, "signature": self.signature, "signed_by": self.body["verifier_key"]}


def _scope(order_id: str | None, site_id: str | None, since: datetime | None, until: datetime | None) -> Scope:
    for t in (since, until):
        if t is not None and t.tzinfo is None:
            raise InvalidRequest("report times need a time zone", code="invalid_time")
    return Scope(
        order_id=order_id,
        site_id=site_id,
        since=format_time(since) if since else None,
        until=format_time(until) if until else None,
    )


def reconciliation_report(
    inst: Instance,
    *,
    order_id: str | None = None,
    site_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sign_checkpoint: bool = False,
) -> Report:
    """The report at the newest stored checkpoint (``merkle_log.covering_checkpoint``: signs nothing, the
    API's GET); with ``sign_checkpoint`` at one of the whole tree signed now (a write: the command line)."""
    scope = _scope(order_id, site_id, since, until)
    with inst.db.read() as s:
        if order_id is not None and s.get(Order, order_id) is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        if site_id is not None and s.get(Site, site_id) is None:
            raise NotFound(f"no site {site_id!r}", code="site_not_found")
    checkpoint = document_checkpoint(inst, since=since, until=until, sign=sign_checkpoint)

    def entries() -> Iterator[dict[str, object]]:
        with inst.db.read() as s:
            last = 0
            while last < checkpoint.size:
                rows = s.execute(
                    select(Event.seq, Event.entry)
                    .where(Event.seq > last, Event.seq <= checkpoint.size)
                    .order_by(Event.seq)
                    .limit(5000)
                ).all()
                for seq, entry in rows:
                    last = seq
                    yield decode_entry(bytes(entry))

    result = reconcile(entries(), scope)
    result.tree_size = checkpoint.size
    body = {**signed_head(inst, "FabGuard reconciliation report", checkpoint), **result.to_dict()}
    key = merkle_log.ledger_signing_key(inst)
    signature = base64.b64encode(key.sign(canonical_json(body))).decode()
    return Report(body, signature, result)


def to_csv(report: Report) -> str:
    """One row per piece of evidence: category, serial, outcome or refusal code, ledger entry index."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["category", "serial", "detail", "ledger_entry"])
    ev = report.body["evidence"]
    for row in ev["provisioned"]:
        writer.writerow(["provisioned", row["serial"], "", row["entry"]])
    for row in ev["refused"]:
        writer.writerow(["refused", row["serial"] or "", row["code"], row["entry"]])
    for row in ev["revoked"]:
        writer.writerow(["revoked", row["serial"], "", row["entry"]])
    for row in ev["tests"]:
        writer.writerow(["test", row["serial"], row["outcome"], row["entry"]])
    return out.getvalue()


def to_pdf(report: Report) -> bytes:
    """A readable PDF for a contract audit: figures, refusals, exceptions, and the checkpoint note."""
    body = report.body
    figures = body["figures"]
    pdf = pdf_document(body, Scope(**body["scope"]).describe())
    _table(
        pdf,
        "Figures",
        [
            ("Ordered (quota)", figures["ordered"]),
            ("Units tested", figures["tested"]["units"]),
            ("  passed first time", figures["tested"]["passed_first_time"]),
            ("  failed at least once", figures["tested"]["failed_at_least_once"]),
            ("  retests", figures["tested"]["retests"]),
            ("  final pass / final fail", f"{figures['tested']['final_pass']} / {figures['tested']['final_fail']}"),
            ("Provisioned", figures["provisioned"]),
            ("Refused", figures["refused_total"]),
            *[(f"  {code}", n) for code, n in figures["refused"].items()],
            ("Revoked", figures["revoked"]),
            ("Remaining quota", figures["remaining"]),
        ],
    )
    exc = figures["exceptions"]
    _table(
        pdf,
        "Exceptions",
        [
            ("Passed test but not provisioned", len(exc["passed_but_not_provisioned"])),
            ("Provisioned without a passing test", len(exc["provisioned_without_a_passing_test"])),
        ],
    )
    refusals = body["evidence"]["refused"][:200]
    if refusals:
        _table(
            pdf,
            "Refusals (first 200; all in the JSON/CSV)",
            [(f"{r['serial'] or '-'}  {r['code']}", f"entry {r['entry']}") for r in refusals],
        )
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, "Signed checkpoint (C2SP signed note)", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Courier", "", 8)
    pdf.multi_cell(0, 4, latin1(body["checkpoint"]["note"].replace("\u2014", "--")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(
        0,
        5,
        latin1(
            "The figures are computed from the ledger entries covered by this checkpoint. Verify the export "
            "with 'fabguard audit verify', and this report's detached signature (report.pdf.sig, Ed25519 by "
            f"the ledger key {body['verifier_key']}) with 'fabguard audit verify-report'."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    return bytes(pdf.output())


def document_checkpoint(
    inst: Instance, *, since: datetime | None, until: datetime | None, sign: bool
) -> merkle_log.SignedCheckpoint:
    """What a signed document of the period binds to: one signed now (``sign``), else the newest stored one
    that covers the period (409 ``checkpoint_required`` if none does)."""
    if sign:
        return merkle_log.make_checkpoint(inst)
    return merkle_log.covering_checkpoint(inst, since=since, until=until)


def signed_head(inst: Instance, title: str, checkpoint: merkle_log.SignedCheckpoint) -> dict[str, Any]:
    """What every signed document (report, royalty statement, device manifest) starts with: what it is,
    whose, when, the checkpoint it was computed at, and the key that checks it."""
    return {
        "title": title,
        "organization": inst.config.organization,
        "generated_at": format_time(inst.clock()),
        "checkpoint": {
            "size": checkpoint.size,
            "root": base64.b64encode(checkpoint.root).decode(),
            "note": checkpoint.note,
        },
        "verifier_key": merkle_log.public_verifier_key(inst),
    }


def pdf_document(body: dict[str, Any], scope: str, *extra: str) -> FPDF:
    """An A4 PDF opened on a signed document's head: its title, whose, the scope, when, the checkpoint."""
    # Lazy: fpdf2 takes about half a second to import, and every fabguard command imports this module
    # (through ``fabguard audit``); only a PDF needs it.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(body["title"])
    pdf.set_author(f"FabGuard for {body['organization']}")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, latin1(body["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for line in (
        f"Organisation: {body['organization']}",
        f"Scope: {scope}",
        f"Generated: {body['generated_at']}",
        f"Computed at ledger checkpoint: size {body['checkpoint']['size']}, root {body['checkpoint']['root']}",
        *extra,
    ):
        pdf.multi_cell(0, 6, latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    return pdf


def latin1(text: str) -> str:
    """What the PDF's core font can show: anything else becomes '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _table(pdf: FPDF, title: str, rows: list[tuple[str, object]]) -> None:
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for label, value in rows:
        pdf.cell(110, 6, latin1(str(label)), border="B")
        pdf.cell(0, 6, latin1(str(value)), border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def sign_bytes(inst: Instance, data: bytes) -> str:
    """A detached Ed25519 signature by the ledger key (base64), e.g. over a report PDF."""
    return base64.b64encode(merkle_log.ledger_signing_key(inst).sign(data)).decode()


def report_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
