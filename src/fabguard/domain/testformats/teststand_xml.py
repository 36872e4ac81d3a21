"""TestStand's own XML report format (not ATML): ``<Reports><Report Type='UUT'>`` holding the UUT's
properties and its results as nested ``Prop`` elements, which older lines write by default."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, tzinfo

from fabguard.domain.testformats.common import (
    FormatInvalid,
    FormatLimits,
    FormatUnknown,
    RecordBuilder,
    RecordTooLarge,
    clean_name,
    measurement_outcome,
    millis,
    number,
    record_outcome,
    step_outcome,
)
from fabguard.domain.testformats.safexml import Document
from fabguard.domain.testrecord import TestRecord

# The report's ``Comp`` words that are not already a comparison FabGuard knows.
_STRING_COMPARISONS = {"IgnoreCase": "CIEQ", "CaseSensitive": "EQ", "LOG": "LOG"}


def _prop(element: ET.Element | None, path: str) -> ET.Element | None:
    """The ``Prop`` found by a dotted path of ``Name`` attributes (``TS.StepName``)."""
    for name in path.split("."):
        if element is None:
            return None
        element = next((p for p in element.findall("Prop") if p.get("Name") == name), None)
    return element


def _text(element: ET.Element | None, path: str) -> str | None:
    found = _prop(element, path)
    if found is None:
        return None
    value = found.find("Value")
    return (value.text or "") if value is not None else None


def _seconds(element: ET.Element | None, path: str) -> float | None:
    return number(_text(element, path))


class _Reader:
    def __init__(self, doc: Document, limits: FormatLimits, assume_tz: tzinfo, station: str | None) -> None:
        self.station = station
        self.doc = doc
        self.limits = limits
        self.tz = assume_tz

    def start(self, report: ET.Element) -> datetime:
        parts = [_text(report, p) for p in ("StartDate.Year", "StartDate.Month", "StartDate.MonthDay")]
        parts += [_text(report, p) for p in ("StartTime.Hours", "StartTime.Minutes", "StartTime.Seconds")]
        ms = _text(report, "StartTime.Milliseconds") or "0"
        try:
            year, month, day, hour, minute, second, milli = (int(float(p or "")) for p in [*parts, ms])
            return datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=self.tz)
        except (ValueError, OverflowError):
            raise FormatInvalid(f"{self.doc.at(report)}: StartDate and StartTime are not a date and time") from None

    def record(self, report: ET.Element) -> TestRecord:
        main = next((p for p in report.findall("Prop") if p.get("Type") == "TEResult"), None)
        if main is None:
            raise FormatInvalid(f"{self.doc.at(report)}: no TEResult (the main sequence's results)")
        start = self.start(report)
        base = _seconds(main, "TS.StartTime")
        total = _seconds(main, "TS.TotalTime") or 0.0
        build = RecordBuilder(self.limits)
        self.steps(main, build, "", start, base)
        begun = millis(start, self.doc.at(report))
        return build.record(
            _text(report, "UUT.SerialNumber"),
            _text(report, "StationInfo.StationID") or self.station,
            record_outcome(step_outcome(report.get("UUTResult"), self.doc.at(report))),
            begun,
            begun + max(0, round(total * 1000)) if total < 1e9 else begun,
        )

    def at(self, start: datetime, base: float | None, seconds: float | None) -> int | None:
        if base is None or seconds is None or not 0 <= seconds - base < 1e8:
            return None
        return millis(start + timedelta(seconds=seconds - base), "step time")

    def steps(self, parent: ET.Element, build: RecordBuilder, prefix: str, start: datetime, base: float | None) -> None:
        results = _prop(parent, "TS.SequenceCall.ResultList")
        if results is None:
            return
        for slot in results.findall("Value"):
            step = next((p for p in slot.findall("Prop") if p.get("Type") == "TEResult"), None)
            if step is None:
                continue
            where = self.doc.at(step)
            own = _text(step, "TS.StepName") or ""
            name = clean_name(prefix + own, where)
            outcome = step_outcome(_text(step, "Status"), where)
            begin = self.at(start, base, _seconds(step, "TS.StartTime"))
            length = _seconds(step, "TS.TotalTime")
            end = begin + round(length * 1000) if begin is not None and length is not None and length < 1e8 else None
            call = _prop(step, "TS.SequenceCall")
            kept = len(build.measurements)
            if outcome != "SKIP":  # a skipped step's values are its defaults, not measurements
                self.measurements(step, name, outcome, build)
            # An action keeps no verdict (Done): a step of the record only when it measured something.
            if call is not None or len(build.measurements) > kept or outcome != "DONE":
                build.phase(name, outcome, begin, max(begin, end) if begin is not None and end is not None else end)
            if call is not None:
                self.steps(step, build, f"{prefix}{own} / ", start, base)

    def measurements(self, step: ET.Element, phase: str, outcome: str, build: RecordBuilder) -> None:
        where = self.doc.at(step)
        if _prop(step, "Numeric") is not None:
            self.numeric(step, phase, phase, outcome, build, "Numeric")
        elif _prop(step, "String") is not None:
            comp = _text(step, "Comp") or "LOG"
            build.measurement(
                phase,
                phase,
                measurement_outcome(outcome),
                text=_text(step, "String") or "",
                expected=_text(step, "Limits.String"),
                comparison=_STRING_COMPARISONS.get(comp, comp),
                where=where,
            )
        multi = _prop(step, "Measurement")
        if multi is None:
            return
        for slot in multi.findall("Value"):
            measure = slot.find("Prop")
            if measure is None:
                continue
            name = clean_name(measure.get("Name") or slot.get("ID") or "", self.doc.at(measure))
            status = _text(measure, "Status")
            own = step_outcome(status, self.doc.at(measure)) if status else outcome
            self.numeric(measure, phase, name, own, build, "Data")

    def numeric(self, holder: ET.Element, phase: str, name: str, outcome: str, build: RecordBuilder, data: str) -> None:
        comp = _text(holder, "Comp") or "LOG"
        low, high = _seconds(holder, "Limits.Low"), _seconds(holder, "Limits.High")
        # A comparison with one limit uses the Low limit in TestStand, whichever side it bounds.
        if comp in ("GE", "GT"):
            lower, upper = low, None
        elif comp in ("EQ", "NE"):
            lower = upper = low
        elif comp in ("LE", "LT"):
            lower, upper = None, low
        elif comp == "LOG":
            lower = upper = None
        elif comp == "EQT":  # equal within a threshold: TestStand keeps the nominal and its tolerance apart
            lower = upper = None
            comp = "LOG"
        else:
            lower, upper = low, high
        value = _seconds(holder, data)
        raw = _text(holder, data)
        build.measurement(
            phase,
            name,
            measurement_outcome(outcome),
            value=value,
            lower=lower,
            upper=upper,
            units=_text(holder, "Units"),
            comparison=comp,
            text=raw if value is None and raw else None,
            where=self.doc.at(holder),
        )


def parse_teststand_xml(
    doc: Document, limits: FormatLimits, assume_tz: tzinfo, station: str | None = None
) -> tuple[TestRecord, ...]:
    """Each UUT report's record in a TestStand XML report file (batch reports are left out)."""
    if doc.root.tag == "Reports":
        reports = doc.root.findall("Report")
    elif doc.root.tag == "Report":
        reports = [doc.root]
    else:
        raise FormatUnknown(f"{doc.at(doc.root)} is not a TestStand XML report")
    uut = [r for r in reports if r.get("Type") == "UUT"]
    if not uut:
        raise FormatInvalid(f"{doc.at(doc.root)}: no Report of Type 'UUT'")
    if len(uut) > limits.max_records:
        raise RecordTooLarge(f"a file may hold at most {limits.max_records} UUT records")
    reader = _Reader(doc, limits, assume_tz, station)
    return tuple(reader.record(r) for r in uut)
