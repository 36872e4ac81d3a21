"""Per-unit test records in OpenHTF's JSON output shape, parsed into checked values.

Only what FabGuard decides on or reports is extracted; the full record is kept verbatim beside it.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import Serial, TestOutcome, describe_value

MAX_NAME = 128  # a name's length (a station, step, measurement, unit)
_MAX_NAME = MAX_NAME
MAX_TEXT = 256  # a string measurement's value or expected string, cut to this length

# How a measurement was judged, in TestStand's words (also what ATML, TestStand's XML report and WATS
# use): one limit (``GE``: value >= lower), a range (``GELE``: lower <= value <= upper, ``LTGT``:
# outside it), ``EQ``/``NE`` a value, ``LOG`` no judgement; for strings ``EQ`` (case-sensitive) and
# ``CIEQ`` (case-insensitive).
COMPARISONS = frozenset(
    {"EQ", "NE", "GT", "GE", "LT", "LE", "LOG", "CIEQ"}
    | {a + b for a in ("GT", "GE") for b in ("LT", "LE")}
    | {a + b for a in ("LT", "LE") for b in ("GT", "GE")}
)


class TestRecordInvalid(InvalidRequest):
    __test__ = False
    code = "test_record_invalid"


@dataclass(frozen=True, slots=True)
class Measurement:
    phase: str
    name: str
    outcome: str
    value: float | None
    lower: float | None
    upper: float | None
    units: str | None
    comparison: str | None = None  # one of COMPARISONS
    text: str | None = None  # a measured value that is a string (a string-value step's)
    expected: str | None = None  # the string a string measurement is compared with


def default_comparison(lower: float | None, upper: float | None) -> str | None:
    """The comparison limits imply when a record names none: a range, one bound, or equality."""
    if lower is not None and upper is not None:
        return "EQ" if lower == upper else "GELE"
    if lower is not None:
        return "GE"
    return "LE" if upper is not None else None


@dataclass(frozen=True, slots=True)
class PhaseResult:
    name: str
    outcome: str
    start_ms: int | None
    end_ms: int | None


@dataclass(frozen=True, slots=True)
class TestRecord:
    __test__ = False

    serial: Serial
    # The body's ``station_id``, as the record says it: a claim, never the record's identity (the station
    # of a record is the fixture that uploaded it, and its site is that fixture's).
    declared_station_id: str
    outcome: TestOutcome
    start_ms: int
    end_ms: int
    phases: tuple[PhaseResult, ...]
    measurements: tuple[Measurement, ...]

    @property
    def passed(self) -> bool:
        return self.outcome is TestOutcome.PASS


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME or not value.isprintable():
        raise TestRecordInvalid(f"{where} must be a printable string of 1-{_MAX_NAME} characters")
    return value


def _millis(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 10**15:
        raise TestRecordInvalid(f"{where} must be a non-negative integer of milliseconds since the epoch")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        return None
    return f if math.isfinite(f) else None


def _limits(meas: dict[str, Any]) -> tuple[float | None, float | None]:
    """Limits from the record: explicit ``lower``/``upper`` keys or OpenHTF's ``validators`` text."""
    lower = _number(meas.get("lower"))
    upper = _number(meas.get("upper"))
    validators = meas.get("validators")
    if (lower is None and upper is None) and isinstance(validators, list):
        for text in validators:
            if isinstance(text, str):
                lo, hi = _parse_validator(text)
                lower = lo if lo is not None else lower
                upper = hi if hi is not None else upper
    return lower, upper


@functools.lru_cache(maxsize=4096)  # a procedure's few validator texts repeat on every record
def _parse_validator(text: str) -> tuple[float | None, float | None]:
    """Read OpenHTF's ``in_range`` text forms: ``0.5 <= x <= 1.5``, ``3 <= x``, ``x <= 7``, ``x == 5``,
    and marginal ranges ``0.5 <= Marginal:0.6 <= x <= Marginal:1.4 <= 1.5`` (the outer limits count)."""
    parts = [
        p
        for p in text.replace("<=", " <= ").replace(">=", " >= ").replace("==", " == ").split()
        if not p.startswith("Marginal:")
    ]
    if "x" not in parts:
        return None, None
    at = parts.index("x")
    before, after = parts[:at], parts[at + 1 :]

    def number(token: str) -> float | None:
        try:
            value = float(token)
        except (ValueError, OverflowError):
            return None
        return value if math.isfinite(value) else None

    if len(after) == 2 and after[0] == "==" and not before:
        v = number(after[1])
        return v, v
    lower = number(before[0]) if len(before) >= 2 and before[-1] in ("<=", "<") else None
    upper = number(after[-1]) if len(after) >= 2 and after[0] in ("<=", "<") else None
    if not before and len(after) == 2 and after[0] == ">=":
        lower = number(after[1])
    return lower, upper


def parse_openhtf_record(data: Any, *, max_phases: int = 500, max_measurements: int = 5000) -> TestRecord:
    """Check an OpenHTF JSON test record (as produced by ``OutputToJSON``) and extract its facts."""
    if not isinstance(data, dict):
        raise TestRecordInvalid("a test record must be a JSON object")
    serial = Serial(data.get("dut_id"))  # type: ignore[arg-type]
    station_id = _name(data.get("station_id"), "station_id")
    outcome = _outcome(data.get("outcome"))
    start = _millis(data.get("start_time_millis"), "start_time_millis")
    end = _millis(data.get("end_time_millis"), "end_time_millis")
    if end < start:
        raise TestRecordInvalid("end_time_millis is before start_time_millis")
    raw_phases = data.get("phases", [])
    if not isinstance(raw_phases, list):
        raise TestRecordInvalid("phases must be a list")
    if len(raw_phases) > max_phases:
        raise TestRecordInvalid(f"a test record may hold at most {max_phases} phases")
    phases: list[PhaseResult] = []
    measurements: list[Measurement] = []
    for i, ph in enumerate(raw_phases):
        if not isinstance(ph, dict):
            raise TestRecordInvalid(f"phases[{i}] must be an object")
        phase = _phase(ph, i)
        phases.append(phase)
        for m in _raw_measurements(ph, i):
            if not isinstance(m, dict):
                raise TestRecordInvalid(f"phases[{i}] has a measurement that is not an object")
            if len(measurements) >= max_measurements:
                raise TestRecordInvalid(f"a test record may hold at most {max_measurements} measurements")
            measurements.append(_measurement(m, phase.name, i))
    return TestRecord(
        serial=serial,
        declared_station_id=station_id,
        outcome=outcome,
        start_ms=start,
        end_ms=end,
        phases=tuple(phases),
        measurements=tuple(measurements),
    )


def _outcome(raw: Any) -> TestOutcome:
    try:
        outcome = TestOutcome(str(raw)) if isinstance(raw, str) else None
    except ValueError:
        outcome = None
    if outcome is None:
        allowed = ", ".join(o.value for o in TestOutcome)
        raise TestRecordInvalid(f"outcome {describe_value(raw)} is not one of {allowed}")
    return outcome


def _phase(ph: dict[str, Any], i: int) -> PhaseResult:
    """Phase ``i`` of an OpenHTF record, without its measurements."""
    pstart = ph.get("start_time_millis")
    pend = ph.get("end_time_millis")
    return PhaseResult(
        _name(ph.get("name"), f"phases[{i}].name"),
        _name(ph.get("outcome", "PASS"), f"phases[{i}].outcome"),
        _millis(pstart, f"phases[{i}].start_time_millis") if pstart is not None else None,
        _millis(pend, f"phases[{i}].end_time_millis") if pend is not None else None,
    )


def _raw_measurements(ph: dict[str, Any], i: int) -> list[Any]:
    """Phase ``i``'s measurements, given as an object by name or as a list."""
    raw_meas = ph.get("measurements", {})
    if isinstance(raw_meas, dict):
        return list(raw_meas.values())
    if isinstance(raw_meas, list):
        return raw_meas
    raise TestRecordInvalid(f"phases[{i}].measurements must be an object or a list")


def _measurement(m: dict[str, Any], phase: str, i: int) -> Measurement:
    """One measurement of phase ``i`` (named ``phase``)."""
    lower, upper = _limits(m)
    units = m.get("units")
    unit_name = units.get("name") if isinstance(units, dict) else units
    measured = m.get("measured_value")
    comparison = m.get("comparison")
    expected = m.get("expected")
    return Measurement(
        phase=phase,
        name=_name(m.get("name"), f"phases[{i}] measurement name"),
        outcome=_name(m.get("outcome", "UNSET"), f"phases[{i}] measurement outcome"),
        value=_number(m.get("measured_value")),
        lower=lower,
        upper=upper,
        units=unit_name[:_MAX_NAME] if isinstance(unit_name, str) else None,
        comparison=(
            comparison
            if isinstance(comparison, str) and comparison in COMPARISONS
            else default_comparison(lower, upper)
        ),
        text=measured[:MAX_TEXT] if isinstance(measured, str) else None,
        expected=expected[:MAX_TEXT] if isinstance(expected, str) else None,
    )


def stored_text(data: Any) -> str:
    """A checked record as it is stored: compact JSON with sorted keys.

    Written by orjson (eight times the standard library's speed: a fast line uploads thousands of
    records a second), which writes NaN and infinities as ``null``, as JSON has no such numbers (the
    parser reads them as no value either way). What orjson does not write (an integer past 64 bits,
    a string with a lone surrogate) goes through the standard library instead.
    """
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(data, separators=(",", ":"), sort_keys=True)


# (phase, name, outcome, value, lower, upper) of one stored measurement.
StoredMeasurement = tuple[str, str, str, float | None, float | None, float | None]


def stored_rows(data: Any) -> tuple[list[tuple[str, str]], list[StoredMeasurement]]:
    """Phases and measurements of a record already checked by ``parse_openhtf_record`` when stored, as
    plain tuples: (name, outcome) of each phase and (phase, name, outcome, value, lower, upper) of each
    measurement, in record order.

    The fast path for reading stored records back (analytics folds a million of them): it trusts the
    shape it was given and skips the checks, so it must never see a record that did not pass them.
    """
    phases: list[tuple[str, str]] = []
    measurements: list[StoredMeasurement] = []
    add = measurements.append
    validator_limits = _parse_validator
    for ph in data.get("phases", ()):
        pname = ph["name"]
        phases.append((pname, ph.get("outcome", "PASS")))
        raw = ph.get("measurements", {})
        for m in raw.values() if isinstance(raw, dict) else raw:
            value = m.get("measured_value")
            # ``_number`` and ``_limits``, inlined for the usual case: a finite float (inf - inf and
            # nan - nan are nan), no explicit limits and one validator text.
            if type(value) is not float or value - value != 0.0:
                value = _number(value)
            validators = m.get("validators")
            if (
                type(validators) is list
                and len(validators) == 1
                and type(text := validators[0]) is str
                and "lower" not in m
                and "upper" not in m
            ):
                lower, upper = validator_limits(text)
            else:
                lower, upper = _limits(m)
            add((pname, m["name"], m.get("outcome", "UNSET"), value, lower, upper))
    return phases, measurements
