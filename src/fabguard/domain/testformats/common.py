"""What every test-record format's reader shares: its refusals, its limits, and the builder that turns
what a format says into the one test-record model (``fabguard.domain.testrecord.TestRecord``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.testrecord import (
    COMPARISONS,
    MAX_NAME,
    MAX_TEXT,
    Measurement,
    PhaseResult,
    TestRecord,
    default_comparison,
)
from fabguard.domain.values import Serial, TestOutcome, describe_value

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MILLIS = 10**15  # as parse_openhtf_record: about year 33658


class FormatInvalid(InvalidRequest):
    """A record that does not parse in its format; the message names the line or element at fault."""

    code = "test_record_format_invalid"


class FormatUnknown(InvalidRequest):
    code = "test_record_format_unknown"


class RecordTooLarge(InvalidRequest):
    code = "test_record_too_large"
    status = 413


@dataclass(frozen=True, slots=True)
class FormatLimits:
    """What one uploaded file may hold. The defaults fit a long TestStand run (a real ATML 5 report of
    600 steps is 670 KB) and keep a hostile file's cost bounded."""

    max_bytes: int = 8 * 1024 * 1024
    max_depth: int = 64  # XML element nesting
    max_elements: int = 500_000  # XML elements in all
    max_records: int = 64  # UUTs in one file (a batch or parallel model's report)
    max_phases: int = 2000
    max_measurements: int = 5000


def clean_name(value: str, where: str) -> str:
    """A step or measurement name as the model takes it: white space folded to single spaces, other
    control characters dropped, long names cut to their last characters (the most specific part of a
    nested path). An empty name is refused."""
    text = " ".join("".join(c if c.isprintable() or c.isspace() else "" for c in value).split())
    if not text:
        raise FormatInvalid(f"{where}: a name is empty")
    return text if len(text) <= MAX_NAME else "…" + text[-(MAX_NAME - 1) :]


def clean_text(value: str) -> str:
    return value[:MAX_TEXT]


def number(text: str | None) -> float | None:
    """A finite number written as text, or None (empty, not a number, infinite, NaN)."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def millis(moment: datetime, where: str) -> int:
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= ms <= _MAX_MILLIS:
        raise FormatInvalid(f"{where}: time {moment.isoformat()} is out of range")
    return ms


def iso_millis(text: str | None, where: str, assume_tz: tzinfo) -> int:
    """Milliseconds since the epoch of an ISO 8601 time; a time without a zone is in ``assume_tz``."""
    if not text:
        raise FormatInvalid(f"{where}: a time is missing")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FormatInvalid(f"{where}: {describe_value(text)} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=assume_tz)
    try:
        return millis(moment, where)
    except OverflowError:  # a zone's offset pushing year 1 or 9999 out of range
        raise FormatInvalid(f"{where}: time {describe_value(text)} is out of range") from None


# TestStand's step and UUT results (ATML ``Outcome``, the XML report's ``Status`` and ``UUTResult``).
_STEP_OUTCOMES = {
    "passed": "PASS",
    "failed": "FAIL",
    "error": "ERROR",
    "terminated": "ABORTED",
    "aborted": "ABORTED",
    "skipped": "SKIP",
    "notstarted": "SKIP",
    "done": "DONE",
    "running": "ERROR",
    "incomplete": "ERROR",
}
# A run's result: only Passed is PASS; a run that reached no verdict (Done, Skipped, Running) is ERROR,
# so that it never counts as a pass.
_RECORD_OUTCOMES = {
    "PASS": TestOutcome.PASS,
    "FAIL": TestOutcome.FAIL,
    "ABORTED": TestOutcome.ABORTED,
}


def step_outcome(text: str | None, where: str) -> str:
    """A TestStand result word as a step outcome: PASS, FAIL, ERROR, ABORTED, SKIP or DONE."""
    outcome = _STEP_OUTCOMES.get((text or "").strip().lower())
    if outcome is None:
        raise FormatInvalid(f"{where}: outcome {describe_value(text)} is not a TestStand result")
    return outcome


def record_outcome(step: str) -> TestOutcome:
    return _RECORD_OUTCOMES.get(step, TestOutcome.ERROR)


def measurement_outcome(step: str) -> str:
    """A measurement's outcome from its step's: PASS or FAIL, or UNSET (OpenHTF's word) for the rest."""
    return step if step in ("PASS", "FAIL") else "UNSET"


@dataclass
class RecordBuilder:
    """Collects one UUT's steps and measurements, keeping the limits, then makes the ``TestRecord``."""

    limits: FormatLimits
    phases: list[PhaseResult] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)

    def phase(self, name: str, outcome: str, start_ms: int | None = None, end_ms: int | None = None) -> None:
        if len(self.phases) >= self.limits.max_phases:
            raise RecordTooLarge(f"a test record may hold at most {self.limits.max_phases} steps")
        self.phases.append(PhaseResult(name, outcome, start_ms, end_ms))

    def measurement(
        self,
        phase: str,
        name: str,
        outcome: str,
        *,
        value: float | None = None,
        lower: float | None = None,
        upper: float | None = None,
        units: str | None = None,
        comparison: str | None = None,
        text: str | None = None,
        expected: str | None = None,
        where: str = "",
    ) -> None:
        if len(self.measurements) >= self.limits.max_measurements:
            raise RecordTooLarge(f"a test record may hold at most {self.limits.max_measurements} measurements")
        if comparison is not None and comparison not in COMPARISONS:
            raise FormatInvalid(f"{where}: comparison {describe_value(comparison)} is not one FabGuard knows")
        self.measurements.append(
            Measurement(
                phase=phase,
                name=name,
                outcome=outcome,
                value=value,
                lower=lower,
                upper=upper,
                units=clean_name(units, where)[:MAX_NAME] if units and units.strip() else None,
                comparison=comparison or default_comparison(lower, upper),
                text=clean_text(text) if text is not None else None,
                expected=clean_text(expected) if expected is not None else None,
            )
        )

    def record(self, serial: str | None, station: str | None, outcome: TestOutcome, start: int, end: int) -> TestRecord:
        if serial is None or not serial.strip():
            raise FormatInvalid("the record names no UUT serial number")
        if station is None or not station.strip():
            raise FormatInvalid("the record names no test station (and none was given)")
        if end < start:
            raise FormatInvalid("the record ends before it starts")
        return TestRecord(
            serial=Serial.parse(serial.strip()),
            declared_station_id=clean_name(station, "station"),
            outcome=outcome,
            start_ms=start,
            end_ms=end,
            phases=tuple(self.phases),
            measurements=tuple(self.measurements),
        )
