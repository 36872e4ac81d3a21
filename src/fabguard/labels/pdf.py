"""Labels as PDF, one page per unit, the page the size of the label stock.

The QR code is drawn as vector squares from segno's module matrix (with its 4-module quiet zone), so
it stays sharp at any printer resolution; the text is in the PDF core font Helvetica.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import segno
from fpdf import FPDF

from fabguard.labels.content import UnitLabel

QUIET_ZONE = 4  # modules of white around a QR code (ISO/IEC 18004)
_PT_PER_MM = 72 / 25.4


@dataclass(frozen=True, slots=True)
class PdfLayout:
    """The label stock's size in millimetres and the QR code's width, quiet zone included."""

    width_mm: float = 50
    height_mm: float = 30
    qr_mm: float = 24


def _draw_qr(pdf: FPDF, text: str, x: float, y: float, size: float) -> None:
    code = segno.make(text, micro=False)
    matrix = code.matrix
    module = size / (len(matrix) + 2 * QUIET_ZONE)
    pdf.set_fill_color(0, 0, 0)
    for row, bits in enumerate(matrix):
        column = 0
        while column < len(bits):
            if not bits[column]:
                column += 1
                continue
            run = column
            while run < len(bits) and bits[run]:
                run += 1
            # One rectangle per run of dark modules: fewer operators, and no hairline seams between them.
            pdf.rect(
                x + (QUIET_ZONE + column) * module,
                y + (QUIET_ZONE + row) * module,
                (run - column) * module,
                module,
                style="F",
            )
            column = run


def pdf_labels(labels: Iterable[UnitLabel], layout: PdfLayout = PdfLayout()) -> bytes:
    """A PDF with one page per label, in order."""
    pdf = FPDF(unit="mm", format=(layout.width_mm, layout.height_mm))
    pdf.set_auto_page_break(False)
    pdf.set_margin(0)
    pdf.set_creator("FabGuard")
    for label in labels:
        pdf.add_page()
        qr_y = (layout.height_mm - layout.qr_mm) / 2
        _draw_qr(pdf, label.qr, 0, qr_y, layout.qr_mm)
        lines = label.lines()
        text_x = layout.qr_mm + 1
        line_mm = min(4.0, (layout.height_mm - 4) / max(len(lines), 1))
        width_mm = layout.width_mm - text_x - 1
        pdf.set_font("helvetica", size=line_mm * _PT_PER_MM * 0.8)
        widest = max(pdf.get_string_width(line) for line in lines)
        if widest > width_mm:  # shrink the text to the room beside the QR code
            pdf.set_font("helvetica", size=pdf.font_size_pt * width_mm / widest)
        top = (layout.height_mm - line_mm * len(lines)) / 2
        for i, line in enumerate(lines):
            pdf.set_xy(text_x, top + i * line_mm)
            pdf.cell(width_mm, line_mm, line)
    return bytes(pdf.output())
