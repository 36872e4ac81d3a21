"""CSV in FabGuard's documented column layout, one row per measurement."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.domain.testformats import detect_format, parse_test_record, parse_test_records
from fabguard.domain.values import TestOutcome

RUN = (Path(__file__).parents[2] / "data" / "testformats" / "csv" / "station_run.csv").read_bytes()


def test_the_documented_layout_is_read_into_steps_and_measurements() -> None:
    assert detect_format(RUN) == "csv"
    record = parse_test_record(RUN, "csv")
    assert (record.serial.value, record.declared_station_id, record.outcome) == (
        "SN-CSV-0001",
        "LINE1-FCT-02",
        TestOutcome.PASS,
    )
    assert record.start_ms == 1709629200000 and record.end_ms - record.start_ms == 4500  # 09:00 UTC
    assert [p.name for p in record.phases] == ["Supply voltage", "Rail currents", "Firmware version", "Button pressed"]
    assert [(m.name, m.value, m.lower, m.upper, m.units, m.comparison) for m in record.measurements[:3]] == [
        ("vcc", 3.31, 3.2, 3.4, "V", "GELE"),
        ("I_3V3", 11.5, 8.0, 16.0, "mA", "GELE"),  # no comparison given: a range implies GELE
        ("I_1V8", 4.25, 2.0, 5.0, "mA", "GELE"),
    ]
    fw = record.measurements[3]
    assert (fw.text, fw.expected, fw.comparison) == ("FW-1.4.2", "fw-1.4.2", "CIEQ")


def test_rows_of_two_units_are_two_records() -> None:
    lines = RUN.decode().splitlines()
    other = [line.replace("SN-CSV-0001", "SN-CSV-0002") for line in lines[1:]]
    assert [r.serial.value for r in parse_test_records("\n".join(lines + other).encode())] == [
        "SN-CSV-0001",
        "SN-CSV-0002",
    ]


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("serial,station", "serial,statoin", "line 1"),  # a misspelt column
        (",PASS,Rail currents,PASS,I_3V3", ",FAIL,Rail currents,PASS,I_3V3", "line 3"),  # record columns differ
        ("Supply voltage,PASS", "Supply voltage,MAYBE", "line 2"),
        ("2024-03-05T10:00:04.500+01:00,PASS,Supply", "soon,PASS,Supply", "line 2"),
        ("11.5,8,16,mA,,,", "11.5,8,16,mA,,,,", "line 3"),  # a column too many
    ],
)
def test_a_malformed_csv_is_refused_with_the_line_at_fault(old: str, new: str, said: str) -> None:
    text = RUN.decode()
    assert old in text
    with pytest.raises(FabGuardError) as refused:
        parse_test_records(text.replace(old, new, 1).encode())
    assert refused.value.code == "test_record_format_invalid"
    assert said in refused.value.message
