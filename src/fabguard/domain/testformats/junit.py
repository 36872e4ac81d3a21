"""JUnit XML as ``pytest --junitxml`` writes it: one station run of one unit.

The unit and station are suite properties (``record_testsuite_property("serial", ...)``, and
``"station"`` or else the suite's ``hostname``); each test case is a step, and its
``record_property`` values are its measurements (``name``, with ``name.lower``, ``name.upper``,
``name.units`` and ``name.comparison`` beside it when there are limits).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import tzinfo

from fabguard.domain.testformats.common import (
    FormatInvalid,
    FormatLimits,
    FormatUnknown,
    RecordBuilder,
    clean_name,
    iso_millis,
    measurement_outcome,
    number,
)
from fabguard.domain.testformats.safexml import Document
from fabguard.domain.testrecord import TestRecord
from fabguard.domain.values import TestOutcome

SERIAL_PROPERTIES = ("serial", "serial_number", "dut_id")
STATION_PROPERTIES = ("station", "station_id")
_ANNOTATIONS = ("lower", "upper", "units", "comparison", "outcome")


def _properties(element: ET.Element) -> list[tuple[str, str]]:
    holder = element.find("properties")
    if holder is None:
        return []
    return [(p.get("name") or "", p.get("value") or "") for p in holder.findall("property")]


def _case_outcome(case: ET.Element) -> str:
    if case.find("error") is not None:
        return "ERROR"
    if case.find("failure") is not None:
        return "FAIL"
    return "SKIP" if case.find("skipped") is not None else "PASS"


def _seconds(text: str | None) -> float:
    value = number(text)
    return value if value is not None and 0 <= value < 1e8 else 0.0


def _measurements(case: ET.Element, phase: str, outcome: str, build: RecordBuilder, doc: Document) -> None:
    props = _properties(case)
    notes = {name: value for name, value in props if name.rpartition(".")[2] in _ANNOTATIONS and "." in name}
    for name, raw in props:
        if name in notes:
            continue
        where = f"{doc.at(case)} property {name[:40]!r}"
        value = number(raw)
        comparison = notes.get(f"{name}.comparison") or None
        own = notes.get(f"{name}.outcome")
        build.measurement(
            phase,
            clean_name(name, where),
            own.strip().upper() if own in ("PASS", "FAIL", "pass", "fail") else measurement_outcome(outcome),
            value=value,
            lower=number(notes.get(f"{name}.lower")),
            upper=number(notes.get(f"{name}.upper")),
            units=notes.get(f"{name}.units"),
            comparison=comparison.strip().upper() if comparison else None,
            text=None if value is not None else raw,
            where=where,
        )


def parse_junit(doc: Document, limits: FormatLimits, assume_tz: tzinfo, station: str | None) -> tuple[TestRecord, ...]:
    """The one unit's record in a JUnit XML file (all its suites together)."""
    root = doc.root
    if root.tag == "testsuites":
        suites = root.findall("testsuite")
    elif root.tag == "testsuite":
        suites = [root]
    else:
        raise FormatUnknown(f"{doc.at(root)} is not JUnit XML")
    if not suites:
        raise FormatInvalid(f"{doc.at(root)}: no testsuite")
    first = suites[0]
    suite_props = dict(p for s in suites for p in _properties(s))
    serial = next((suite_props[k] for k in SERIAL_PROPERTIES if k in suite_props), None)
    station_id = next((suite_props[k] for k in STATION_PROPERTIES if k in suite_props), None)
    station_id = station_id or first.get("hostname") or station
    start = iso_millis(first.get("timestamp"), f"{doc.at(first)} timestamp", assume_tz)
    duration = sum(_seconds(s.get("time")) for s in suites)
    build = RecordBuilder(limits)
    outcomes: list[str] = []
    for suite in suites:
        for case in suite.findall("testcase"):
            where = doc.at(case)
            outcome = _case_outcome(case)
            outcomes.append(outcome)
            name = clean_name(case.get("name") or "", where)
            build.phase(name, outcome)
            _measurements(case, name, outcome, build, doc)
    if not outcomes or "ERROR" in outcomes:
        result = TestOutcome.ERROR
    else:
        result = TestOutcome.FAIL if "FAIL" in outcomes else TestOutcome.PASS
    return (build.record(serial, station_id, result, start, start + round(duration * 1000)),)
