"""ZPL labels: one ^XA...^XZ format per unit, the printer's own QR code carrying the payload."""

from __future__ import annotations

import re

from fabguard.domain.identities import MacBlock
from fabguard.domain.values import Serial
from fabguard.labels import UnitLabel, ZplLayout, field_check_url, field_data, zpl_label, zpl_labels

PAYLOAD = "MT:634J042C00KA0648G00"


def _label(n: int = 0) -> UnitLabel:
    macs = MacBlock.parse("00-1B-63", per_unit=2).addresses(n)
    return UnitLabel(Serial(f"FG-{n:08d}"), PAYLOAD, macs, manual_code="3497-011-2332", title="Plug")


def _commands(zpl: str) -> list[str]:
    return [c for c in re.split(r"(?=\^)", zpl.replace("\n", "")) if c]


def test_a_label_is_one_format_with_size_qr_and_text_fields() -> None:
    zpl = zpl_label(_label(), ZplLayout(width_mm=50, height_mm=30, dots_per_mm=8))
    assert zpl.startswith("^XA\n") and zpl.endswith("^XZ\n")
    assert zpl.count("^XA") == zpl.count("^XZ") == 1
    commands = _commands(zpl)
    assert "^PW400" in commands and "^LL240" in commands
    (qr,) = [i for i, c in enumerate(commands) if c.startswith("^BQN,2,")]
    # The QR field: model 2, then ^FD with "MA," (error correction M, automatic input) and the payload.
    assert commands[qr + 1 : qr + 4] == ["^FH_", f"^FDMA,{PAYLOAD}", "^FS"]
    texts = [c[3:] for c in commands if c.startswith("^FD") and not c.startswith("^FDMA,")]
    assert texts == ["Plug", "S/N FG-00000000", "MAC 00:1B:63:00:00:00", "MAC 00:1B:63:00:00:01", "Code 3497-011-2332"]
    # Every field is positioned, fonted, and closed.
    assert commands.count("^FS") == 6 and sum(c.startswith("^FO") for c in commands) == 6


def test_a_field_check_url_is_the_qr_data_escaped_for_fh() -> None:
    url = field_check_url("https://check.example.com/u_1", Serial("FG-7"))
    zpl = zpl_label(UnitLabel(Serial("FG-7"), url))
    assert "^FDMA,https://check.example.com/u_5F1?serial=FG-7^FS" in zpl


def test_data_cannot_start_a_command() -> None:
    assert field_data("a^XZ~JR_b") == "a_5EXZ_7EJR_5Fb"
    zpl = zpl_label(UnitLabel(Serial("FG-7"), "x^XZ~DG", title="A^B~C"))
    assert zpl.count("^XZ") == 1 and "~" not in zpl


def test_many_labels_are_many_formats_in_order() -> None:
    zpl = zpl_labels([_label(n) for n in range(3)])
    assert zpl.count("^XA") == 3
    assert re.findall(r"\^FDS/N (\S+)\^FS", zpl) == ["FG-00000000", "FG-00000001", "FG-00000002"]


def test_a_300_dpi_printer_gets_a_larger_magnification_for_the_same_size() -> None:
    low = re.search(r"\^BQN,2,(\d+)", zpl_label(_label(), ZplLayout(dots_per_mm=8)))
    high = re.search(r"\^BQN,2,(\d+)", zpl_label(_label(), ZplLayout(dots_per_mm=12)))
    assert low and high and int(high.group(1)) > int(low.group(1))
