"""The royalty statement as a PDF for the CM and the OEM's finance: lines, totals, and the checkpoint it was
computed at. Its detached signature (``statement.pdf.sig``) is made by the ledger key like a report's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabguard.ledger.royalty import RoyaltyScope
from fabguard.service.ledger.reports import latin1, pdf_document
from fabguard.service.royalties.statements import Statement

if TYPE_CHECKING:
    from fpdf import FPDF  # imported where a PDF is made: fpdf is slow to import


def to_pdf(st: Statement) -> bytes:
    body = st.body
    figures = body["figures"]
    pdf = pdf_document(body, RoyaltyScope(**body["scope"]).describe(), f"Terms: {body['terms']}")
    _heading(pdf, "Lines")
    widths = (28, 38, 30, 18, 28, 0)
    _row(pdf, widths, ("site", "order", "product", "units", "rate", "amount"), bold=True)
    for ln in body["lines"]:
        rate = ln["rate"]
        _row(
            pdf,
            widths,
            (
                ln["site_id"],
                ln["order_id"],
                ln["product_id"],
                str(ln["units"]),
                f"{rate['amount']} ({rate['basis']})" if rate else "no rate",
                f"{ln['amount']} {ln['currency']}" if rate else "-",
            ),
        )
    pdf.ln(3)
    _heading(pdf, "Figures")
    rows: list[tuple[str, object]] = [
        ("Units provisioned", figures["provisioned"]),
        ("  of which with no rate in force", figures["unrated"]),
        *[(f"Total due ({currency})", total) for currency, total in figures["totals"].items()],
        ("Units revoked (not credited)", figures["revoked"]),
        ("Attempts refused (not charged)", figures["refused_total"]),
        *[(f"  {code}", n) for code, n in figures["refused"].items()],
    ]
    for label, value in rows:
        _row(pdf, (110, 0), (label, str(value)))
    pdf.add_page()
    _heading(pdf, "Signed checkpoint (C2SP signed note)")
    pdf.set_font("Courier", "", 8)
    pdf.multi_cell(0, 4, latin1(body["checkpoint"]["note"].replace("\u2014", "--")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(
        0,
        5,
        latin1(
            "The figures are computed from the ledger entries covered by this checkpoint (recompute them from "
            "an export with fabguard.ledger.royalty). Check this statement's detached signature "
            f"(statement.pdf.sig, Ed25519 by the ledger key {body['verifier_key']}) with "
            "'fabguard audit verify-report'."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    return bytes(pdf.output())


def _heading(pdf: FPDF, title: str) -> None:
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)


def _row(pdf: FPDF, widths: tuple[int, ...], cells: tuple[str, ...], *, bold: bool = False) -> None:
    pdf.set_font("Helvetica", "B" if bold else "", 9)
    for i, (w, text) in enumerate(zip(widths, cells, strict=True)):
        last = i == len(cells) - 1
        if last:
            pdf.cell(w, 6, latin1(text), border="B", align="R", new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.cell(w, 6, latin1(text), border="B")
    pdf.set_font("Helvetica", "", 10)
