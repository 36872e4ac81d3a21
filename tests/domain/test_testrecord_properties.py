"""Hostile test records: any JSON-shaped value is a parsed record or a declared 4xx, never a crash.

A record that parses is also stored and read back (``stored_text``, ``stored_rows``) without an error:
the fast reader trusts what the parser let through.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fabguard.domain.errors import FabGuardError, is_declared
from fabguard.domain.testrecord import TestRecord, parse_openhtf_record, stored_rows, stored_text
from fabguard.fixture.openhtf_records import openhtf_record
from tests.hypothesis_profiles import examples

PROPERTY = settings(max_examples=examples(200), derandomize=True, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
VALID = openhtf_record("SN-PROP-1", "fx-1", fail=False, rng=random.Random(1))
KEYS = sorted(VALID)


def _parse(data: Any) -> TestRecord | None:
    try:
        record = parse_openhtf_record(data, max_phases=20, max_measurements=50)
    except FabGuardError as refused:
        assert is_declared(refused.code), refused.code
        assert 400 <= refused.status < 500, refused.status
        return None
    stored_rows(json.loads(stored_text(data)))
    return record


@PROPERTY
@given(json_values)
@example(10**5000)  # str() of an integer this long raises in Python itself
@example({"dut_id": 10**5000})
def test_any_json_value_is_a_record_or_a_declared_refusal(data: Any) -> None:
    _parse(data)


@st.composite
def mutated_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid OpenHTF record with some fields (top level, a phase, a measurement) replaced or removed."""
    record = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "phase", "measurement"]))
        target: dict[str, Any] = record
        if where != "top" and isinstance(record.get("phases"), list) and record["phases"]:
            phase = draw(st.sampled_from(record["phases"]))
            target = phase if isinstance(phase, dict) else record
            meas = target.get("measurements")
            if where == "measurement" and isinstance(meas, dict) and meas:
                m = meas[draw(st.sampled_from(sorted(meas)))]
                target = m if isinstance(m, dict) else target
        if not target:
            continue
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(json_values)
    return record


@PROPERTY
@given(mutated_records())
def test_a_mutated_valid_record_is_a_record_or_a_declared_refusal(data: dict[str, Any]) -> None:
    _parse(data)


def test_the_unmutated_record_parses() -> None:
    record = _parse(VALID)
    assert record is not None and record.passed and record.measurements
