"""TestStand ATML reports (2.02, 5.00, 6.01) read into the one test-record model."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.domain.testformats import parse_test_record, parse_test_records
from fabguard.domain.values import TestOutcome

ATML = Path(__file__).parents[2] / "data" / "testformats" / "atml"
VERSIONS = ("202", "500", "601")


def _read(version: str, result: str) -> bytes:
    return (ATML / f"teststand_atml{version}_{result}.xml").read_bytes()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_passing_report_gives_its_unit_station_times_and_outcome(version: str) -> None:
    record = parse_test_record(_read(version, "passed"), "atml")
    assert record.serial.value == "SN-ATML-0001"
    assert record.declared_station_id == "LINE2-FCT-07"
    assert record.outcome is TestOutcome.PASS
    assert record.end_ms - record.start_ms == 3150  # 09:14:02.050 to 09:14:05.200


@pytest.mark.parametrize("version", VERSIONS)
def test_every_step_kind_is_read_with_its_limits_units_and_comparison(version: str) -> None:
    record = parse_test_record(_read(version, "failed"), "atml")
    assert record.outcome is TestOutcome.FAIL
    phases = {p.name: p.outcome for p in record.phases}
    assert phases == {
        "Supply voltage": "FAIL",
        "Rail currents": "PASS",
        "Button pressed": "PASS",  # pass/fail: a step without a measurement
        "Firmware version": "PASS",
        "Flash - Subsequence Call": "PASS",  # the sequence call, named by its caller
        "Flash - Subsequence Call / Flash temperature": "DONE",
        "Flash - Subsequence Call / Flash erase time": "PASS",
    }
    by_name = {m.name: m for m in record.measurements}
    vcc = by_name["Supply voltage"]  # numeric limit with offset: one result, named for its step
    assert (vcc.value, vcc.lower, vcc.upper, vcc.units, vcc.comparison, vcc.outcome) == (
        3.52,
        3.2,
        3.4,
        "V",
        "GELE",
        "FAIL",
    )
    rails = [m for m in record.measurements if m.phase == "Rail currents"]  # multiple numeric limit
    assert [(m.name, m.value, m.lower, m.upper, m.units) for m in rails] == [
        ("I_3V3", 11.5, 8.0, 16.0, "mA"),
        ("I_1V8", 4.25, 2.0, 5.0, "mA"),
    ]  # its "Raw reading" additional result has no limits: not a measurement
    fw = by_name["Firmware version"]
    assert (fw.value, fw.text, fw.expected, fw.comparison) == (None, "FW-1.4.2", "fw-1.4.2", "CIEQ")
    logged = by_name["Flash - Subsequence Call / Flash temperature"]
    assert (logged.value, logged.comparison, logged.lower, logged.upper, logged.outcome) == (
        41.5,
        "LOG",
        None,
        None,
        "UNSET",
    )
    erase = by_name["Flash - Subsequence Call / Flash erase time"]
    assert (erase.lower, erase.upper, erase.comparison) == (None, 2.0, "LT")


def test_actions_that_keep_no_verdict_are_not_steps() -> None:
    record = parse_test_record(_read("500", "passed"))
    assert "Set Nest, UnitSN" not in {p.name for p in record.phases}


def test_times_without_a_zone_are_read_in_the_zone_given() -> None:
    utc = parse_test_record(_read("601", "passed"), assume_tz=UTC)
    cet = parse_test_record(_read("601", "passed"), assume_tz=timezone(timedelta(hours=1)))
    assert utc.start_ms - cet.start_ms == 3_600_000


def test_a_collection_of_several_uuts_gives_one_record_each_and_the_single_entry_refuses_it() -> None:
    text = _read("500", "passed").decode("iso-8859-1")
    start = text.index("<trc:TestResults ")
    end = text.index("</trc:TestResults>") + len("</trc:TestResults>")
    second = text[start:end].replace("SN-ATML-0001", "SN-ATML-0003")
    both = (text[:end] + "\n" + second + text[end:]).encode("iso-8859-1")
    assert [r.serial.value for r in parse_test_records(both)] == ["SN-ATML-0001", "SN-ATML-0003"]
    with pytest.raises(FabGuardError) as refused:
        parse_test_record(both)
    assert refused.value.code == "test_record_format_invalid"


@pytest.mark.parametrize(
    ("old", "new", "code", "said"),
    [
        ('<tr:Outcome value="Passed" />', '<tr:Outcome value="Maybe" />', "test_record_format_invalid", "Maybe"),
        (
            'endDateTime = "2024-03-05T09:14:05.200"',
            'endDateTime = "yesterday"',
            "test_record_format_invalid",
            "line 7 <ResultSet",
        ),
        (
            "<c:SerialNumber>SN-ATML-0001</c:SerialNumber>",
            "<c:SerialNumber></c:SerialNumber>",
            "test_record_format_invalid",
            "serial",
        ),
        (
            "<c:SerialNumber>SN-ATML-0001</c:SerialNumber>",
            "<c:SerialNumber>SN 1!</c:SerialNumber>",
            "serial_invalid",
            "SN 1!",
        ),
        ('<c:Limit comparator = "GE">', '<c:Limit comparator = "ABOUT">', "test_record_format_invalid", "<Limit>"),
        (
            "urn:IEEE-1636.1:2011:01:TestResultsCollection",
            "urn:IEEE-1636.1:2011:TestResultsCollection",
            "test_record_format_unknown",
            "namespace",
        ),
        ("</tr:ResultSet>", "</tr:ResultSett>", "test_record_format_invalid", "not well-formed"),
    ],
)
def test_a_malformed_report_is_refused_with_a_code_and_where(old: str, new: str, code: str, said: str) -> None:
    text = _read("500", "passed").decode("iso-8859-1")
    assert old in text
    with pytest.raises(FabGuardError) as refused:
        parse_test_record(text.replace(old, new, 1).encode("iso-8859-1"))
    assert refused.value.code == code
    assert said in refused.value.message


def test_a_report_without_a_station_takes_the_one_given_and_is_refused_without() -> None:
    data = _read("601", "passed").replace(b"<c:SerialNumber>LINE2-FCT-07</c:SerialNumber>", b"")
    assert parse_test_record(data, station="bench-3").declared_station_id == "bench-3"
    with pytest.raises(FabGuardError) as refused:
        parse_test_record(data)
    assert refused.value.code == "test_record_format_invalid" and "station" in refused.value.message
