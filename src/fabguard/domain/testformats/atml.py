"""ATML Test Results (IEEE 1636.1) as TestStand writes them: its ATML 2.02, 5.00 and 6.01 report formats.

The namespaces are the ones real TestStand reports carry (docs/test-record-formats.md says where they
were read); some documentation, and pyWATS's converter, name others.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import tzinfo

from fabguard.domain.testformats.common import (
    FormatInvalid,
    FormatLimits,
    FormatUnknown,
    RecordBuilder,
    RecordTooLarge,
    clean_name,
    iso_millis,
    measurement_outcome,
    number,
    record_outcome,
    step_outcome,
)
from fabguard.domain.testformats.safexml import Document, local, namespace
from fabguard.domain.testrecord import TestRecord


@dataclass(frozen=True)
class AtmlVersion:
    name: str
    collection: str | None  # the TestResultsCollection wrapper's namespace (2.02 has none)
    tr: str
    c: str
    ts: str


VERSIONS = (
    AtmlVersion(
        "2.02",
        None,
        "http://www.ieee.org/ATML/2007/TestResults",
        "http://www.ieee.org/ATML/2006/Common",
        "www.ni.com/TestStand/ATMLTestResults/1.0",
    ),
    AtmlVersion(
        "5.00",
        "urn:IEEE-1636.1:2011:01:TestResultsCollection",
        "urn:IEEE-1636.1:2011:01:TestResults",
        "urn:IEEE-1671:2010:Common",
        "www.ni.com/TestStand/ATMLTestResults/2.0",
    ),
    AtmlVersion(
        "6.01",
        "urn:IEEE-1636.1:2013:TestResultsCollection",
        "urn:IEEE-1636.1:2013:TestResults",
        "urn:IEEE-1671:2010:Common",
        "www.ni.com/TestStand/ATMLTestResults/3.0",
    ),
)
_DEFAULT_RESULT_NAMES = ("Numeric", "String")  # TestStand's names for a step's one measurement


def atml_version(root_tag: str) -> AtmlVersion | None:
    """The ATML version whose root element (a collection, or 2.02's bare TestResults) this is."""
    ns, name = namespace(root_tag), local(root_tag)
    for version in VERSIONS:
        if (name == "TestResultsCollection" and ns == version.collection) or (
            name == "TestResults" and ns == version.tr
        ):
            return version
    return None


class _Reader:
    def __init__(
        self, doc: Document, version: AtmlVersion, limits: FormatLimits, assume_tz: tzinfo, station: str | None
    ) -> None:
        self.station = station
        self.doc = doc
        self.v = version
        self.limits = limits
        self.tz = assume_tz

    def tr(self, element: ET.Element, name: str) -> ET.Element | None:
        return element.find(f"{{{self.v.tr}}}{name}")

    def c(self, element: ET.Element | None, name: str) -> ET.Element | None:
        return None if element is None else element.find(f"{{{self.v.c}}}{name}")

    def ts(self, element: ET.Element | None, path: str) -> ET.Element | None:
        if element is None:
            return None
        return element.find("/".join(f"{{{self.v.ts}}}{part}" for part in path.split("/")))

    def time(self, element: ET.Element, attribute: str, *, required: bool) -> int | None:
        text = element.get(attribute)
        if text is None and not required:
            return None
        return iso_millis(text, f"{self.doc.at(element)} {attribute}", self.tz)

    def outcome(self, element: ET.Element, tag: str = "Outcome") -> str:
        found = self.tr(element, tag)
        if found is None:
            raise FormatInvalid(f"{self.doc.at(element)}: no {tag}")
        value = found.get("value")
        if value == "UserDefined":  # the word is in the qualifier
            value = found.get("qualifier")
        return step_outcome(value, self.doc.at(found))

    def record(self, results: ET.Element) -> TestRecord:
        result_set = self.tr(results, "ResultSet")
        if result_set is None:
            raise FormatInvalid(f"{self.doc.at(results)}: no ResultSet")
        build = RecordBuilder(self.limits)
        self.steps(result_set, build, "")
        uut = self.tr(results, "UUT")
        station = self.tr(results, "TestStation")
        serial = self.c(uut, "SerialNumber")
        station_id = self.c(station, "SerialNumber")
        return build.record(
            serial.text if serial is not None else None,
            (station_id.text if station_id is not None else None) or self.station,
            record_outcome(self.outcome(result_set)),
            self.time(result_set, "startDateTime", required=True) or 0,
            self.time(result_set, "endDateTime", required=True) or 0,
        )

    def steps(self, container: ET.Element, build: RecordBuilder, prefix: str) -> None:
        for step in container:
            if namespace(step.tag) != self.v.tr:
                continue
            kind = local(step.tag)
            if kind not in ("Test", "TestGroup", "SessionAction"):
                continue
            if kind == "TestGroup":  # a sequence call: its name is "file.seq#Sequence"
                own = step.get("callerName") or (step.get("name") or "").rpartition("#")[2]
            else:
                own = step.get("name") or ""
            name = clean_name(prefix + own, self.doc.at(step))
            outcome = self.outcome(step, "ActionOutcome" if kind == "SessionAction" else "Outcome")
            start = self.time(step, "startDateTime", required=False)
            end = self.time(step, "endDateTime", required=False)
            if kind == "SessionAction":  # an action keeps no verdict: a step only when it went wrong
                if outcome in ("FAIL", "ERROR", "ABORTED"):
                    build.phase(name, outcome, start, end)
                continue
            build.phase(name, outcome, start, end)
            if kind == "TestGroup":
                self.steps(step, build, f"{prefix}{own} / ")
            else:
                self.measurements(step, name, outcome, build)

    def measurements(self, test: ET.Element, phase: str, outcome: str, build: RecordBuilder) -> None:
        # TestStand's own style sheets show as measurements the results with limits or logged without;
        # a step's other results ("additional results") are data, not measurements.
        results = [
            r
            for r in test.findall(f"{{{self.v.tr}}}TestResult")
            if self.tr(r, "TestLimits") is not None
            or self.ts(self.tr(r, "Extension"), "TSLimitProperties/IsComparisonTypeLog") is not None
        ]
        for result in results:
            where = self.doc.at(result)
            result_name = result.get("name") or result.get("ID") or ""
            single = len(results) == 1 and result_name in _DEFAULT_RESULT_NAMES
            name = phase if single else clean_name(result_name, where)
            data = self.tr(result, "TestData")
            datum = self.c(data, "Datum")
            value: float | None = None
            text: str | None = None
            units: str | None = None
            if datum is not None:
                units = datum.get("nonStandardUnit") or datum.get("unit")
                if datum.get("value") is not None:
                    raw = datum.get("value") or ""
                    value = number(raw)
                    text = None if value is not None else raw
                else:
                    held = self.c(datum, "Value")
                    text = (held.text or "") if held is not None else None
            own = self.tr(result, "Outcome")
            result_outcome = outcome if own is None else step_outcome(own.get("value"), self.doc.at(own))
            lower, upper, comparison, expected = self.limits_of(result)
            build.measurement(
                phase,
                name,
                measurement_outcome(result_outcome),
                value=value,
                lower=lower,
                upper=upper,
                units=units,
                comparison=comparison,
                text=text,
                expected=expected,
                where=where,
            )

    def limits_of(self, result: ET.Element) -> tuple[float | None, float | None, str | None, str | None]:
        """(lower, upper, comparison, expected string) of a TestResult's limits."""
        test_limits = self.tr(result, "TestLimits")
        limits = None if test_limits is None else self.tr(test_limits, "Limits")
        if limits is None:
            return None, None, "LOG", None
        where = self.doc.at(limits)
        pair = self.c(limits, "LimitPair")
        if pair is not None:
            bounds = pair.findall(f"{{{self.v.c}}}Limit")
            if len(bounds) != 2:
                raise FormatInvalid(f"{self.doc.at(pair)}: a LimitPair holds two Limit elements")
            (lo, lo_cmp), (hi, hi_cmp) = (self.bound(b) for b in bounds)
            return lo, hi, lo_cmp + hi_cmp, None
        single = self.c(limits, "SingleLimit")
        if single is not None:
            value, comparator = self.bound(single)
            if comparator in ("GE", "GT"):
                return value, None, comparator, None
            if comparator in ("LE", "LT"):
                return None, value, comparator, None
            return value, value, comparator, None
        expected = self.c(limits, "Expected")
        if expected is not None:
            threshold = self.threshold(limits)
            if threshold is not None:
                return threshold
            comparator = expected.get("comparator") or "EQ"
            datum = self.c(expected, "Datum")
            held = self.c(datum, "Value")
            if held is not None:  # a string limit
                return None, None, "CIEQ" if comparator == "CIEQ" else "EQ", held.text or ""
            value = number(datum.get("value")) if datum is not None else None
            if comparator not in ("EQ", "NE"):
                raise FormatInvalid(f"{where}: comparator {comparator!r} is not one an Expected limit takes")
            return value, value, comparator, None
        return None, None, None, None  # a limit expression or mask: kept without limits

    def bound(self, limit: ET.Element) -> tuple[float | None, str]:
        comparator = limit.get("comparator") or ""
        if comparator not in ("EQ", "NE", "GT", "GE", "LT", "LE"):
            raise FormatInvalid(f"{self.doc.at(limit)}: comparator {comparator[:20]!r} is not one ATML defines")
        datum = self.c(limit, "Datum")
        return (number(datum.get("value")) if datum is not None else None), comparator

    def threshold(self, limits: ET.Element) -> tuple[float | None, float | None, str | None, str | None] | None:
        """Limits TestStand states as a nominal value and a percentage, ppm or delta around it."""
        props = self.ts(self.c(limits, "Extension"), "TSLimitProperties")
        kind = self.ts(props, "ThresholdType")
        raw = self.ts(props, "RawLimits")
        nominal = self.ts(raw, "Nominal")
        if kind is None or nominal is None:
            return None
        scale = {"PERCENTAGE": 100.0, "PPM": 1e6, "DELTA": None}.get((kind.text or "").strip().upper(), 0.0)
        if scale == 0.0:
            return None
        centre = number(nominal.get("value"))
        low_el, high_el = self.ts(raw, "Low"), self.ts(raw, "High")
        low = number(low_el.get("value")) if low_el is not None else None
        high = number(high_el.get("value")) if high_el is not None else None
        if centre is None:
            return None
        width = 1.0 if scale is None else abs(centre) / scale
        lower = centre - low * width if low is not None else None
        upper = centre + high * width if high is not None else None
        return lower, upper, "GELE", None


def parse_atml(
    doc: Document, limits: FormatLimits, assume_tz: tzinfo, station: str | None = None
) -> tuple[TestRecord, ...]:
    """Each UUT's record in a TestStand ATML report (a collection may hold several: a batch's)."""
    version = atml_version(doc.root.tag)
    if version is None:
        raise FormatUnknown(f"{doc.at(doc.root)} in namespace {namespace(doc.root.tag)!r} is not TestStand ATML")
    reader = _Reader(doc, version, limits, assume_tz, station)
    wrapper = version.collection
    results = [doc.root] if wrapper is None else doc.root.findall(f"{{{wrapper}}}TestResults")
    if not results:
        raise FormatInvalid(f"{doc.at(doc.root)}: no TestResults")
    if len(results) > limits.max_records:
        raise RecordTooLarge(f"a file may hold at most {limits.max_records} UUT records")
    return tuple(reader.record(r) for r in results)
