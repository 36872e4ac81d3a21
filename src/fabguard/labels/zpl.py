"""Labels as ZPL II for Zebra printers: one ``^XA ... ^XZ`` format per unit.

The printer draws the QR code itself (``^BQN,2,m`` with ``MA,``: model 2, error correction M,
automatic input mode). Every field goes through ``^FH_``: ``_``, ``^`` and ``~`` in the data are
written as ``_5F``, ``_5E`` and ``_7E``, so no data can start a ZPL command.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fabguard.labels.content import UnitLabel

_ESCAPED = {"_": "_5F", "^": "_5E", "~": "_7E"}


@dataclass(frozen=True, slots=True)
class ZplLayout:
    """The label stock: its size in millimetres and the printer's resolution (8 dots/mm is 203 dpi, 12 is 300)."""

    width_mm: int = 50
    height_mm: int = 30
    dots_per_mm: int = 8

    def dots(self, mm: float) -> int:
        return round(mm * self.dots_per_mm)


def field_data(text: str) -> str:
    """``text`` escaped for a ``^FH_`` field."""
    return "".join(_ESCAPED.get(c, c) for c in text)


def zpl_label(label: UnitLabel, layout: ZplLayout = ZplLayout()) -> str:
    """One unit's label: the QR code on the left, the serial, MAC addresses and code on the right."""
    margin = layout.dots(2)
    # A QR code of up to 33 modules (version 4) at most 20 mm wide, within the label's height.
    magnification = max(1, min(10, layout.dots(min(20, layout.height_mm - 4)) // 33))
    text_x = margin + 33 * magnification + margin
    lines = label.lines()
    line_height = max(layout.dots(2.5), (layout.dots(layout.height_mm) - 2 * margin) // max(len(lines), 1))
    font = min(line_height - 4, layout.dots(3))
    out = [
        "^XA",
        "^CI0",  # the built-in fonts' ASCII set: labels are printable ASCII only
        f"^PW{layout.dots(layout.width_mm)}",
        f"^LL{layout.dots(layout.height_mm)}",
        f"^FO{margin},{margin}^BQN,2,{magnification}^FH_^FDMA,{field_data(label.qr)}^FS",
    ]
    for i, line in enumerate(lines):
        out.append(f"^FO{text_x},{margin + i * line_height}^A0N,{font},{font}^FH_^FD{field_data(line)}^FS")
    out.append("^XZ")
    return "\n".join(out) + "\n"


def zpl_labels(labels: Iterable[UnitLabel], layout: ZplLayout = ZplLayout()) -> str:
    """Many labels, one format each, in order: what a print job sends to the printer."""
    return "".join(zpl_label(label, layout) for label in labels)
