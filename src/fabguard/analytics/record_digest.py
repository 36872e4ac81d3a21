"""What the dashboard's bounded samples need of a test record, extracted once when it is stored.

The distribution, an order's capability and the units that failed a step read a bounded sample of the
newest records (``analytics.samples``). Parsing each one's full OpenHTF JSON (3 kB, most of it units,
validators and times) was most of their cost, so each record also keeps a digest (``record_digests``,
written in the record's transaction):

- ``measured``: its measurements that have a finite value, ``[phase, name, value, lower, upper]`` each,
  in the stored record's order (JSON);
- ``failed_steps``: for a failed record (outcome not ``PASS``), the steps ``samples.failed_step`` would
  find failed: ``[phase, measurement]`` for each failed measurement and ``[phase, null]`` for each phase
  that failed with none of its measurements failing, sorted (JSON); null for a passing record.

Both are made from the same ``(phases, measurements)`` the readers parsed before (``stored_rows`` of the
stored JSON), so the answers do not change. A record without a digest (stored before they existed and
not filled in) is read from its JSON as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson

from fabguard.analytics.samples import PASS, SKIP, Parsed
from fabguard.domain.testrecord import StoredMeasurement, TestRecord

T = TypeVar("T")
Step = tuple[str, str | None]  # (phase, failed measurement), or (phase, None): the phase itself


def _dumps(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one (a lone surrogate): the standard library writes it
        return json.dumps(value, separators=(",", ":"))


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def failed_steps(
    phases: Sequence[tuple[str, str]], measurements: Sequence[StoredMeasurement | tuple[str, str, str]]
) -> list[Step]:
    """Every step ``samples.failed_step`` says the record failed, sorted (phase steps last in a phase)."""
    failed_measurements = {(p, n) for p, n, o, *_ in measurements if o == "FAIL"}
    phases_with_failed = {p for p, _ in failed_measurements}
    failed_phases = {n for n, o in phases if o not in (PASS, SKIP) and n not in phases_with_failed}
    steps: list[Step] = sorted(failed_measurements)
    return steps + [(p, None) for p in sorted(failed_phases)]


def digest(
    phases: Sequence[tuple[str, str]], measurements: Sequence[StoredMeasurement], failed: bool
) -> tuple[str | None, str]:
    """``(failed_steps, measured)`` of a record whose stored JSON reads as ``(phases, measurements)``."""
    measured = [[p, n, v, lo, hi] for p, n, _, v, lo, hi in measurements if v is not None]
    return (_dumps(failed_steps(phases, measurements)) if failed else None), _dumps(measured)


def stored_order(data: dict[str, Any], measurements: Sequence[T]) -> Sequence[T]:
    """An uploaded record's measurements (in the upload's order, one phase after another, as
    ``parse_openhtf_record`` gives them) in the order its stored JSON holds them: a phase's measurements
    given as an object are stored with their keys sorted."""
    at, out = 0, None
    for ph in data.get("phases", ()):
        raw = ph.get("measurements", {})
        n = len(raw)
        if isinstance(raw, dict) and n > 1 and (keys := list(raw)) != sorted(keys):
            out = list(measurements) if out is None else out
            chunk = out[at : at + n]
            out[at : at + n] = [m for _, m in sorted(zip(keys, chunk, strict=True), key=lambda km: km[0])]
        at += n
    return measurements if out is None else out


def uploaded(data: dict[str, Any], record: TestRecord) -> tuple[str | None, str]:
    """``digest`` of an uploaded record, from its check (``parse_openhtf_record(data)``: the same values
    ``stored_rows`` reads from its stored JSON, in the upload's order) without reading it again."""
    ms = stored_order(data, record.measurements)
    measured = _dumps([[m.phase, m.name, m.value, m.lower, m.upper] for m in ms if m.value is not None])
    if record.outcome.value == PASS:
        return None, measured
    phases = [(p.name, p.outcome) for p in record.phases]
    return _dumps(failed_steps(phases, [(m.phase, m.name, m.outcome) for m in ms])), measured


def steps_of(text: str) -> set[Step]:
    """A digest's ``failed_steps`` read back."""
    return {(p, n) for p, n in _loads(text)}


def failed_in(steps: set[Step], phase: str, measurement: str | None) -> bool:
    """``samples.failed_step`` over a record's failed steps."""
    return (phase, measurement or None) in steps


def measured_of(text: str, step: tuple[str, str] | None = None) -> Parsed:
    """A digest's ``measured`` read back as ``samples`` reads a record (no phases; no outcomes); with
    ``step``, only that measurement's entries."""
    if step is None:
        return [], [(p, n, "", v, lo, hi) for p, n, v, lo, hi in _loads(text)]
    phase, name = step
    return [], [(p, n, "", v, lo, hi) for p, n, v, lo, hi in _loads(text) if n == name and p == phase]
