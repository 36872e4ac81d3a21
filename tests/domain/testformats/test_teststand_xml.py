"""TestStand's own XML report format, read from real reports (tests/data/testformats/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.domain.testformats import detect_format, parse_test_record
from fabguard.domain.values import TestOutcome

REPORTS = Path(__file__).parents[2] / "data" / "testformats" / "teststand_xml"


def test_a_real_report_gives_its_serial_station_outcome_steps_and_measurements() -> None:
    data = (REPORTS / "TsWithoutWats.xml").read_bytes()
    assert detect_format(data) == "teststand-xml"
    record = parse_test_record(data, "teststand-xml")
    assert (record.serial.value, record.declared_station_id, record.outcome) == (
        "2342343",
        "TS-2021-BETA",
        TestOutcome.PASS,
    )
    # UUT start: July 1, 2022, 15:47:48.927 (read as UTC here); the main sequence ran 6.08 s
    assert record.start_ms == 1656690468927
    assert [p.name for p in record.phases][:3] == ["Powerup Test", "CPU Test", "CPU Test / Register Test"]
    assert len(record.phases) == 10  # its 17 results less the actions and flow steps that keep no verdict
    video, keyboard = record.measurements
    assert (video.name, video.value, video.lower, video.upper, video.units, video.comparison) == (
        "Video Test",
        5.0,
        0.0,
        10.0,
        "microseconds",
        "GTLT",
    )
    # a one-limit comparison uses the Low limit
    assert (keyboard.name, keyboard.value, keyboard.lower, keyboard.upper, keyboard.comparison) == (
        "Keyboard Test",
        6.0,
        5.0,
        None,
        "GT",
    )


def test_a_second_real_report_from_another_station_reads_alike() -> None:
    record = parse_test_record((REPORTS / "TSWithWats2.xml").read_bytes())
    assert (record.serial.value, record.declared_station_id, len(record.phases), len(record.measurements)) == (
        "5465466",
        "DESKTOP-N9BCJU1",
        10,
        2,
    )


def _report(step: str, uut_result: str = "Failed") -> bytes:
    return f"""<?xml version="1.0" encoding="iso-8859-1" ?>
<Reports><Report Type='UUT' Title='UUT Report' UUTResult='{uut_result}'>
<Prop Name='UUT' Type='Obj'><Prop Name='SerialNumber' Type='String'><Value>SN-TSX-1</Value></Prop></Prop>
<Prop Name='StartTime' Type='Obj'><Prop Name='Hours' Type='Number'><Value>8</Value></Prop>
<Prop Name='Minutes' Type='Number'><Value>0</Value></Prop><Prop Name='Seconds' Type='Number'><Value>0</Value></Prop>
<Prop Name='Milliseconds' Type='Number'><Value>0</Value></Prop></Prop>
<Prop Name='StartDate' Type='Obj'><Prop Name='Year' Type='Number'><Value>2024</Value></Prop>
<Prop Name='Month' Type='Number'><Value>3</Value></Prop><Prop Name='MonthDay' Type='Number'><Value>5</Value></Prop></Prop>
<Prop Name='StationInfo' Type='Obj'><Prop Name='StationID' Type='String'><Value>ST-1</Value></Prop></Prop>
<Prop Type='TEResult'><Prop Name='TS' Type='Obj'><Prop Name='SequenceCall' Type='Obj'>
<Prop Name='ResultList' Type='Array'><Value ID='[0]'><Prop Type='TEResult'>{step}</Prop></Value></Prop>
</Prop><Prop Name='StartTime' Type='Number'><Value>10</Value></Prop><Prop Name='TotalTime' Type='Number'><Value>2.5</Value></Prop>
</Prop><Prop Name='Status' Type='String'><Value>{uut_result}</Value></Prop></Prop>
</Report></Reports>""".encode("iso-8859-1")


MULTI = """<Prop Name='Status' Type='String'><Value>Failed</Value></Prop>
<Prop Name='TS' Type='Obj'><Prop Name='StepName' Type='String'><Value>Rails</Value></Prop>
<Prop Name='StartTime' Type='Number'><Value>10.5</Value></Prop><Prop Name='TotalTime' Type='Number'><Value>0.25</Value></Prop></Prop>
<Prop Name='Measurement' Type='Array'>
<Value ID='[0]'><Prop Name='I_3V3' Type='Obj'><Prop Name='Data' Type='Number'><Value>11.5</Value></Prop>
<Prop Name='Limits' Type='Obj'><Prop Name='Low' Type='Number'><Value>8</Value></Prop><Prop Name='High' Type='Number'><Value>16</Value></Prop></Prop>
<Prop Name='Comp' Type='String'><Value>GELE</Value></Prop><Prop Name='Units' Type='String'><Value>mA</Value></Prop>
<Prop Name='Status' Type='String'><Value>Passed</Value></Prop></Prop></Value>
<Value ID='[1]'><Prop Name='I_1V8' Type='Obj'><Prop Name='Data' Type='Number'><Value>6.5</Value></Prop>
<Prop Name='Limits' Type='Obj'><Prop Name='Low' Type='Number'><Value>2</Value></Prop><Prop Name='High' Type='Number'><Value>5</Value></Prop></Prop>
<Prop Name='Comp' Type='String'><Value>GELE</Value></Prop><Prop Name='Status' Type='String'><Value>Failed</Value></Prop></Prop></Value>
</Prop>"""

STRING = """<Prop Name='Status' Type='String'><Value>Passed</Value></Prop>
<Prop Name='TS' Type='Obj'><Prop Name='StepName' Type='String'><Value>Firmware</Value></Prop></Prop>
<Prop Name='String' Type='String'><Value>FW-1.4.2</Value></Prop>
<Prop Name='Limits' Type='Obj'><Prop Name='String' Type='String'><Value>fw-1.4.2</Value></Prop></Prop>
<Prop Name='Comp' Type='String'><Value>IgnoreCase</Value></Prop>"""


def test_a_multiple_numeric_step_gives_one_measurement_per_element_with_its_own_outcome() -> None:
    record = parse_test_record(_report(MULTI))
    assert record.outcome is TestOutcome.FAIL
    assert [(p.name, p.outcome, p.start_ms and p.start_ms - record.start_ms) for p in record.phases] == [
        ("Rails", "FAIL", 500)
    ]
    assert [(m.name, m.value, m.lower, m.upper, m.units, m.outcome) for m in record.measurements] == [
        ("I_3V3", 11.5, 8.0, 16.0, "mA", "PASS"),
        ("I_1V8", 6.5, 2.0, 5.0, None, "FAIL"),
    ]
    assert record.end_ms - record.start_ms == 2500


def test_a_string_value_step_keeps_its_string_and_expected_string() -> None:
    (m,) = parse_test_record(_report(STRING, "Passed")).measurements
    assert (m.name, m.value, m.text, m.expected, m.comparison) == ("Firmware", None, "FW-1.4.2", "fw-1.4.2", "CIEQ")


def test_a_report_without_a_serial_is_refused_and_names_what_is_missing() -> None:
    data = _report(STRING).replace(b"<Value>SN-TSX-1</Value>", b"")
    with pytest.raises(FabGuardError) as refused:
        parse_test_record(data)
    assert refused.value.code == "test_record_format_invalid" and "serial" in refused.value.message


def test_an_unknown_status_is_refused_with_the_line_of_the_step() -> None:
    with pytest.raises(FabGuardError) as refused:
        parse_test_record(_report(STRING.replace("<Value>Passed</Value>", "<Value>Fine</Value>", 1)))
    assert refused.value.code == "test_record_format_invalid"
    assert "line 11" in refused.value.message and "Fine" in refused.value.message
