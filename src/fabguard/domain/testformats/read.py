"""One entry for every format a line writes: detect it (or take the one named), parse it into the one
test-record model, refuse anything else with a declared code."""

from __future__ import annotations

from datetime import UTC, tzinfo
from typing import Any

import orjson

from fabguard.domain.testformats.atml import atml_version, parse_atml
from fabguard.domain.testformats.common import (
    FormatInvalid,
    FormatLimits,
    FormatUnknown,
    RecordTooLarge,
)
from fabguard.domain.testformats.csv_layout import parse_csv
from fabguard.domain.testformats.junit import parse_junit
from fabguard.domain.testformats.safexml import Document, namespace, parse_xml
from fabguard.domain.testformats.teststand_xml import parse_teststand_xml
from fabguard.domain.testrecord import TestRecord, parse_openhtf_record

FORMATS = ("openhtf", "atml", "teststand-xml", "junit", "csv")
DEFAULT_LIMITS = FormatLimits()


def _xml_format(doc: Document) -> str | None:
    tag = doc.root.tag
    if atml_version(tag) is not None:
        return "atml"
    if tag in ("Reports", "Report"):
        return "teststand-xml"
    if tag in ("testsuites", "testsuite"):
        return "junit"
    return None


def _sniff(data: bytes) -> str:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "openhtf"
    if head.startswith(b"<"):
        return "xml"
    first = head.split(b"\n", 1)[0].lower()
    if b"serial" in first and b"," in first:
        return "csv"
    raise FormatUnknown("the file is not OpenHTF JSON, XML (ATML, TestStand, JUnit) or CSV")


def detect_format(data: bytes, limits: FormatLimits = DEFAULT_LIMITS) -> str:
    """Which of ``FORMATS`` a file is in (an XML file is parsed, safely, to read its root)."""
    kind = _sniff(data)
    if kind != "xml":
        return kind
    found = _xml_format(parse_xml(data, limits))
    if found is None:
        raise FormatUnknown("the XML is not ATML, a TestStand XML report or JUnit XML")
    return found


def _openhtf(data: bytes, limits: FormatLimits) -> tuple[TestRecord, ...]:
    if len(data) > limits.max_bytes:
        raise RecordTooLarge(f"a test record file may be at most {limits.max_bytes} bytes")
    try:
        value: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FormatInvalid(f"line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})") from None
    return (parse_openhtf_record(value, max_phases=limits.max_phases, max_measurements=limits.max_measurements),)


def parse_test_records(
    data: bytes,
    format: str = "auto",
    *,
    limits: FormatLimits = DEFAULT_LIMITS,
    assume_tz: tzinfo = UTC,
    station: str | None = None,
) -> tuple[TestRecord, ...]:
    """Every UUT's record in one file (a TestStand batch report holds several).

    ``format`` is one of ``FORMATS`` or ``"auto"``; ``assume_tz`` is the zone of times written without
    one (TestStand writes local time without an offset); ``station`` names the station when the file
    does not (JUnit XML without a hostname). Nothing but ``FabGuardError`` with a 4xx code is raised.
    """
    if format != "auto" and format not in FORMATS:
        raise FormatUnknown(f"format {format[:40]!r} is not one of auto, {', '.join(FORMATS)}")
    kind = _sniff(data) if format == "auto" else format
    if kind == "openhtf":
        return _openhtf(data, limits)
    if kind == "csv":
        return parse_csv(data, limits, assume_tz)
    doc = parse_xml(data, limits)
    found = _xml_format(doc)
    if found is None or (format != "auto" and found != format):
        what = "a format FabGuard reads" if found is None else format
        raise FormatUnknown(f"{doc.at(doc.root)} in namespace {namespace(doc.root.tag)!r} is not {what}")
    if found == "atml":
        return parse_atml(doc, limits, assume_tz, station)
    if found == "teststand-xml":
        return parse_teststand_xml(doc, limits, assume_tz, station)
    return parse_junit(doc, limits, assume_tz, station)


def parse_test_record(
    data: bytes,
    format: str = "auto",
    *,
    limits: FormatLimits = DEFAULT_LIMITS,
    assume_tz: tzinfo = UTC,
    station: str | None = None,
) -> TestRecord:
    """The one UUT's record in a file; a file of several UUTs is refused (use ``parse_test_records``)."""
    records = parse_test_records(data, format, limits=limits, assume_tz=assume_tz, station=station)
    if len(records) != 1:
        raise FormatInvalid(f"the file holds {len(records)} UUT records where one was expected")
    return records[0]


def openhtf_json(record: TestRecord) -> dict[str, Any]:
    """A record in OpenHTF's JSON shape, as the server stores records: ``parse_openhtf_record`` reads it
    back to an equal record, so a record from any format is stored and analysed as one from OpenHTF."""
    measurements: dict[str, list[dict[str, Any]]] = {}
    for m in record.measurements:
        item: dict[str, Any] = {
            "name": m.name,
            "outcome": m.outcome,
            "measured_value": m.value if m.value is not None else m.text,
        }
        if m.lower is not None or m.upper is not None:
            item["lower"], item["upper"] = m.lower, m.upper
        for key, value in (("units", m.units), ("comparison", m.comparison), ("expected", m.expected)):
            if value is not None:
                item[key] = value
        measurements.setdefault(m.phase, []).append(item)
    phases = []
    for p in record.phases:
        phase: dict[str, Any] = {"name": p.name, "outcome": p.outcome, "measurements": measurements.pop(p.name, [])}
        if p.start_ms is not None:
            phase["start_time_millis"] = p.start_ms
        if p.end_ms is not None:
            phase["end_time_millis"] = p.end_ms
        phases.append(phase)
    return {
        "dut_id": record.serial.value,
        "station_id": record.declared_station_id,
        "outcome": record.outcome.value,
        "start_time_millis": record.start_ms,
        "end_time_millis": record.end_ms,
        "phases": phases,
    }
