"""Test records as CSV, one row per measurement, in the column layout docs/test-record-formats.md sets.

A header row names the columns (any order; unknown columns are refused, so that a typo is not
silently lost). The record's own columns repeat on each of its rows; rows of another serial or start
time are another record. A row with an empty ``measurement`` is a step without measurements.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import tzinfo

from fabguard.domain.testformats.common import (
    FormatInvalid,
    FormatLimits,
    RecordBuilder,
    RecordTooLarge,
    clean_name,
    iso_millis,
    measurement_outcome,
    number,
)
from fabguard.domain.testrecord import TestRecord
from fabguard.domain.values import TestOutcome, describe_value

REQUIRED = ("serial", "station", "start_time", "end_time", "outcome", "step", "step_outcome", "measurement", "value")
OPTIONAL = ("lower", "upper", "units", "comparison", "measurement_outcome", "expected")
STEP_OUTCOMES = ("PASS", "FAIL", "ERROR", "SKIP", "ABORTED", "DONE")
_RECORD_COLUMNS = ("serial", "station", "start_time", "end_time", "outcome")


@dataclass
class _Pending:
    """A record being read: its first row's record columns, what its rows added, its own columns read."""

    head: tuple[str, ...]
    build: RecordBuilder
    steps: set[str]
    outcome: TestOutcome
    start: int
    end: int


def _rows(data: bytes) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FormatInvalid(f"line {line}: the CSV is not UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise FormatInvalid(f"line {line}: a NUL character")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise FormatInvalid(f"line {reader.line_num}: not CSV ({exc})") from None


def _word(value: str, allowed: tuple[str, ...], where: str) -> str:
    word = value.strip().upper()
    if word not in allowed:
        raise FormatInvalid(f"{where}: {describe_value(value)} is not one of {', '.join(allowed)}")
    return word


def parse_csv(data: bytes, limits: FormatLimits, assume_tz: tzinfo) -> tuple[TestRecord, ...]:
    """The records of a CSV file in FabGuard's column layout, in the order they first appear."""
    if len(data) > limits.max_bytes:
        raise RecordTooLarge(f"a test record file may be at most {limits.max_bytes} bytes")
    rows = _rows(data)
    if not rows:
        raise FormatInvalid("line 1: the CSV is empty")
    header = [h.strip().lower() for h in rows[0]]
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
    missing = [h for h in REQUIRED if h not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise FormatInvalid(
            f"line 1: the header must name the columns {', '.join(REQUIRED)} (and may name "
            f"{', '.join(OPTIONAL)}) once each; unknown {unknown}, missing {missing}"
        )
    if len(rows) - 1 > limits.max_measurements * limits.max_records:
        raise RecordTooLarge(f"a CSV file may hold at most {limits.max_measurements * limits.max_records} rows")
    records: dict[tuple[str, str], _Pending] = {}
    outcomes = tuple(o.value for o in TestOutcome)
    for number_, cells in enumerate(rows[1:], start=2):
        where = f"line {number_}"
        if len(cells) != len(header):
            raise FormatInvalid(f"{where}: {len(cells)} columns where the header has {len(header)}")
        row = dict(zip(header, (c.strip() for c in cells), strict=True))
        key = (row["serial"], row["start_time"])
        head = tuple(row[c] for c in _RECORD_COLUMNS)
        if key not in records:
            if len(records) >= limits.max_records:
                raise RecordTooLarge(f"a file may hold at most {limits.max_records} UUT records")
            records[key] = _Pending(
                head,
                RecordBuilder(limits),
                set(),
                TestOutcome(_word(row["outcome"], outcomes, f"{where} outcome")),
                iso_millis(row["start_time"], f"{where} start_time", assume_tz),
                iso_millis(row["end_time"], f"{where} end_time", assume_tz),
            )
        pending = records[key]
        first, build, steps = pending.head, pending.build, pending.steps
        if head != first:
            raise FormatInvalid(f"{where}: serial, station, times and outcome differ from this record's first row")
        step = clean_name(row["step"], where)
        outcome = _word(row["step_outcome"], STEP_OUTCOMES, f"{where} step_outcome")
        if step not in steps:
            steps.add(step)
            build.phase(step, outcome)
        if not row["measurement"]:
            continue
        value = number(row["value"])
        own = row.get("measurement_outcome") or ""
        build.measurement(
            step,
            clean_name(row["measurement"], where),
            _word(own, ("PASS", "FAIL", "UNSET"), f"{where} measurement_outcome")
            if own
            else measurement_outcome(outcome),
            value=value,
            lower=number(row.get("lower")),
            upper=number(row.get("upper")),
            units=row.get("units") or None,
            comparison=(row.get("comparison") or "").upper() or None,
            text=row["value"] if value is None and row["value"] else None,
            expected=row.get("expected") or None,
            where=where,
        )
    return tuple(p.build.record(serial, p.head[1], p.outcome, p.start, p.end) for (serial, _), p in records.items())
