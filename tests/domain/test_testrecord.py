"""Parsing OpenHTF JSON test records: the facts FabGuard decides on, and refusal of everything malformed."""

from __future__ import annotations

import copy
import json
import math
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabguard.domain.errors import FabGuardError, Refusal
from fabguard.domain.testrecord import TestRecord, TestRecordInvalid, parse_openhtf_record, stored_rows, stored_text
from fabguard.domain.values import Serial, TestOutcome
from fabguard.fixture.openhtf_records import DEFAULT_PROCEDURE, openhtf_record
from tests.hypothesis_profiles import examples

START_MS = 1_700_000_000_000
SERIAL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.:/-]{0,63}"


def record(*, fail: bool = False, serial: str = "SN0000001", seed: int = 1) -> dict[str, Any]:
    return openhtf_record(serial, "station-7", fail=fail, rng=random.Random(seed), now_ms=START_MS)


def invalid(data: Any, **kw: int) -> TestRecordInvalid:
    with pytest.raises(TestRecordInvalid) as info:
        parse_openhtf_record(data, **kw)
    assert info.value.code == "test_record_invalid"
    assert info.value.status == 422
    return info.value


def with_validators(*validators: Any, **extra: Any) -> dict[str, Any]:
    data = record()
    meas = data["phases"][0]["measurements"]["vcc_3v3"]
    meas["validators"] = list(validators)
    meas.update(extra)
    return data


def limits_of(data: dict[str, Any], name: str = "vcc_3v3") -> tuple[float | None, float | None]:
    parsed = parse_openhtf_record(data)
    (m,) = [m for m in parsed.measurements if m.name == name]
    return m.lower, m.upper


# ------------------------------------------------------------------ records from the simulator
def test_passing_record_is_parsed_into_its_facts() -> None:
    data = record()
    parsed = parse_openhtf_record(data)
    assert isinstance(parsed, TestRecord)
    assert parsed.serial == Serial("SN0000001")
    assert parsed.declared_station_id == "station-7"
    assert parsed.outcome is TestOutcome.PASS
    assert parsed.passed
    assert parsed.start_ms == START_MS
    assert parsed.end_ms == data["end_time_millis"] > START_MS
    assert [p.name for p in parsed.phases] == ["power_rails", "current", "radio", "clock"]
    assert all(p.outcome == "PASS" for p in parsed.phases)
    assert [(m.phase, m.name) for m in parsed.measurements] == [(s.phase, s.name) for s in DEFAULT_PROCEDURE]
    assert all(m.outcome == "PASS" for m in parsed.measurements)


def test_measurements_carry_value_units_and_limits_read_from_validators() -> None:
    parsed = parse_openhtf_record(record())
    by_name = {m.name: m for m in parsed.measurements}
    for spec in DEFAULT_PROCEDURE:
        m = by_name[spec.name]
        assert (m.lower, m.upper) == (spec.lower, spec.upper)
        assert m.units == spec.units
        assert m.value is not None
        assert spec.lower <= m.value <= spec.upper


def test_failing_record_is_parsed_as_failed_with_the_out_of_limit_measurement() -> None:
    parsed = parse_openhtf_record(record(fail=True))
    assert parsed.outcome is TestOutcome.FAIL
    assert not parsed.passed
    failed = [m for m in parsed.measurements if m.outcome == "FAIL"]
    assert len(failed) == 1
    (m,) = failed
    assert m.value is not None and m.upper is not None
    assert m.value > m.upper
    assert [p.outcome for p in parsed.phases if p.name == m.phase] == ["FAIL"]


def test_record_survives_a_json_round_trip() -> None:
    data = record()
    assert parse_openhtf_record(json.loads(json.dumps(data))) == parse_openhtf_record(data)


@pytest.mark.parametrize("outcome", [o.value for o in TestOutcome])
def test_every_openhtf_outcome_is_accepted(outcome: str) -> None:
    data = record()
    data["outcome"] = outcome
    assert parse_openhtf_record(data).outcome is TestOutcome(outcome)


def test_record_without_phases_is_accepted() -> None:
    data = record()
    del data["phases"]
    parsed = parse_openhtf_record(data)
    assert parsed.phases == ()
    assert parsed.measurements == ()


def test_measurements_given_as_a_list_are_accepted() -> None:
    data = record()
    for phase in data["phases"]:
        phase["measurements"] = list(phase["measurements"].values())
    assert len(parse_openhtf_record(data).measurements) == len(DEFAULT_PROCEDURE)


@pytest.mark.parametrize(
    "data",
    [
        record(),
        record(fail=True, seed=3),
        with_validators("0.5 <= Marginal:0.6 <= x <= Marginal:1.4 <= 1.5"),
        with_validators("3 <= x", "x <= 7"),
        with_validators(lower=3.1, upper=3.5),
        with_validators(measured_value=None),
        with_validators(measured_value=7),
    ],
    ids=["pass", "fail", "marginal", "two-validators", "explicit-limits", "no-value", "int-value"],
)
def test_the_fast_reader_of_stored_records_reads_what_the_parser_does(data: dict[str, Any]) -> None:
    """``stored_rows`` inlines the usual case for the analytics fold; it must agree with the checked parse."""
    parsed = parse_openhtf_record(copy.deepcopy(data))
    phases, measurements = stored_rows(json.loads(json.dumps(data)))
    assert phases == [(p.name, p.outcome) for p in parsed.phases]
    assert measurements == [(m.phase, m.name, m.outcome, m.value, m.lower, m.upper) for m in parsed.measurements]


def test_unknown_keys_are_ignored() -> None:
    data = record()
    data["something_new"] = {"deep": [1, 2, 3]}
    data["phases"][0]["extra"] = None
    assert parse_openhtf_record(data) == parse_openhtf_record(record())


# ------------------------------------------------------------------ limits from OpenHTF validator text
@pytest.mark.parametrize(
    ("validator", "lower", "upper"),
    [
        pytest.param("0.5 <= x <= 1.5", 0.5, 1.5, id="both"),
        pytest.param("-20.0 <= x <= -1.5", -20.0, -1.5, id="negative"),
        pytest.param("1e-06 <= x <= 0.001", 1e-6, 1e-3, id="exponent"),
        pytest.param("x <= 7", None, 7.0, id="maximum-only"),
        # What OpenHTF's InRange.__str__ writes for a minimum alone.
        pytest.param("3 <= x", 3.0, None, id="minimum-only-openhtf-form"),
        pytest.param("x >= 3", 3.0, None, id="minimum-only-reversed"),
        # InRange(minimum=m, maximum=m) and validators.equals(number) print 'x == m'.
        pytest.param("x == 5", 5.0, 5.0, id="equals"),
        # Marginal limits: the outer (hard) limits decide pass or fail.
        pytest.param("0.5 <= Marginal:0.6 <= x <= Marginal:1.4 <= 1.5", 0.5, 1.5, id="marginal"),
    ],
)
def test_limits_are_read_from_openhtf_in_range_text(validator: str, lower: float | None, upper: float | None) -> None:
    assert limits_of(with_validators(validator)) == (lower, upper)


@pytest.mark.parametrize(
    "validator",
    ["'x' matches /^OK$/", "'x' is equal to 'abc'", "x <= seven", "", "<= <= <= <=", "'x' is within 5% of 10"],
)
def test_validators_that_are_not_numeric_ranges_give_no_limits(validator: str) -> None:
    assert limits_of(with_validators(validator)) == (None, None)


def test_non_string_validators_are_ignored() -> None:
    assert limits_of(with_validators(None, 3, {"min": 1}, "x <= 7")) == (None, 7.0)


def test_explicit_lower_and_upper_keys_take_precedence_over_validators() -> None:
    assert limits_of(with_validators("0.5 <= x <= 1.5", lower=1, upper=2)) == (1.0, 2.0)


@pytest.mark.parametrize("validator", ["nan <= x <= 1", "-inf <= x <= inf", "x <= Infinity"])
def test_non_finite_limits_in_validator_text_are_dropped_like_non_finite_numbers(validator: str) -> None:
    lower, upper = limits_of(with_validators(validator))
    assert lower is None or math.isfinite(lower)
    assert upper is None or math.isfinite(upper)


def test_non_finite_limit_keys_are_dropped() -> None:
    data = with_validators(lower=float("nan"), upper=float("inf"))
    assert limits_of(data) == (None, None)


def test_non_numeric_measured_value_is_kept_as_none() -> None:
    data = record()
    meas = data["phases"][0]["measurements"]["vcc_3v3"]
    for value in ("3.3", True, None, [3.3], float("nan"), float("-inf")):
        meas["measured_value"] = value
        (m, *_) = parse_openhtf_record(data).measurements
        assert m.value is None, value


def test_integer_too_large_for_a_float_is_kept_as_none_not_a_crash() -> None:
    # json.loads turns a 400-digit number into an int that float() cannot hold (OverflowError).
    huge = json.loads("1" + "0" * 400)
    assert huge == 10**400
    data = record()
    data["phases"][0]["measurements"]["vcc_3v3"]["measured_value"] = huge
    (m, *_) = parse_openhtf_record(data).measurements
    assert m.value is None


def test_integer_too_large_for_a_float_as_a_limit_is_dropped_not_a_crash() -> None:
    assert limits_of(with_validators(lower=10**400, upper=2)) == (None, 2.0)


def test_long_units_name_is_truncated() -> None:
    data = record()
    data["phases"][0]["measurements"]["vcc_3v3"]["units"] = "V" * 1000
    (m, *_) = parse_openhtf_record(data).measurements
    assert m.units == "V" * 128


# ------------------------------------------------------------------ malformed records
def mutated(path: tuple[Any, ...], value: Any, *, delete: bool = False) -> dict[str, Any]:
    data = record()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


MALFORMED = {
    "station-missing": mutated(("station_id",), None, delete=True),
    "station-empty": mutated(("station_id",), ""),
    "station-too-long": mutated(("station_id",), "s" * 129),
    "station-control-char": mutated(("station_id",), "st\x1b[2Jation"),
    "station-newline": mutated(("station_id",), "station\nforged log line"),
    "station-not-string": mutated(("station_id",), 7),
    "outcome-missing": mutated(("outcome",), None, delete=True),
    "outcome-lower-case": mutated(("outcome",), "pass"),
    "outcome-unknown": mutated(("outcome",), "MOSTLY_PASS"),
    "outcome-bool": mutated(("outcome",), True),
    "outcome-object": mutated(("outcome",), {"PASS": True}),
    "start-missing": mutated(("start_time_millis",), None, delete=True),
    "start-negative": mutated(("start_time_millis",), -1),
    "start-float": mutated(("start_time_millis",), 1.5),
    "start-bool": mutated(("start_time_millis",), True),
    "start-string": mutated(("start_time_millis",), "1700000000000"),
    "start-far-future": mutated(("start_time_millis",), 10**16),
    "end-before-start": mutated(("end_time_millis",), START_MS - 1),
    "phases-object": mutated(("phases",), {"name": "x"}),
    "phases-string": mutated(("phases",), "power_rails"),
    "phase-not-object": mutated(("phases", 0), ["power_rails"]),
    "phase-name-missing": mutated(("phases", 0, "name"), None, delete=True),
    "phase-name-empty": mutated(("phases", 0, "name"), ""),
    "phase-outcome-not-string": mutated(("phases", 0, "outcome"), 1),
    "phase-start-negative": mutated(("phases", 0, "start_time_millis"), -5),
    "phase-end-string": mutated(("phases", 0, "end_time_millis"), "later"),
    "measurements-string": mutated(("phases", 0, "measurements"), "vcc_3v3=3.3"),
    "measurement-not-object": mutated(("phases", 0, "measurements", "vcc_3v3"), 3.3),
    "measurement-name-missing": mutated(("phases", 0, "measurements", "vcc_3v3", "name"), None, delete=True),
    "measurement-name-too-long": mutated(("phases", 0, "measurements", "vcc_3v3", "name"), "m" * 129),
    "measurement-outcome-not-string": mutated(("phases", 0, "measurements", "vcc_3v3", "outcome"), None),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_record_is_refused_as_test_record_invalid(data: dict[str, Any]) -> None:
    invalid(data)


@pytest.mark.parametrize("data", [None, [], "{}", 42, [record()]], ids=["null", "list", "string", "number", "wrapped"])
def test_record_that_is_not_an_object_is_refused_as_test_record_invalid(data: Any) -> None:
    invalid(data)


@pytest.mark.parametrize(
    "dut_id",
    [None, "", "SN 1", "SN1\n", "SN1'; DROP TABLE test_records;--", "A" * 65, 12345, ["SN1"]],
    ids=["null", "empty", "space", "newline", "sql", "too-long", "number", "list"],
)
def test_record_with_a_bad_dut_id_is_refused_as_serial_invalid(dut_id: Any) -> None:
    data = record()
    data["dut_id"] = dut_id
    with pytest.raises(Refusal) as info:
        parse_openhtf_record(data)
    assert info.value.code == "serial_invalid"


def test_record_without_dut_id_is_refused_as_serial_invalid() -> None:
    data = record()
    del data["dut_id"]
    with pytest.raises(Refusal) as info:
        parse_openhtf_record(data)
    assert info.value.code == "serial_invalid"


def test_refusal_does_not_change_the_record() -> None:
    data = mutated(("outcome",), "nope")
    before = copy.deepcopy(data)
    invalid(data)
    assert data == before


# ------------------------------------------------------------------ limits on size
def phases(count: int, measurements_each: int = 0) -> dict[str, Any]:
    data = record()
    data["phases"] = [
        {
            "name": f"p{i}",
            "outcome": "PASS",
            "measurements": {
                f"m{j}": {"name": f"m{j}", "outcome": "PASS", "measured_value": j} for j in range(measurements_each)
            },
        }
        for i in range(count)
    ]
    return data


def test_record_with_exactly_max_phases_is_accepted() -> None:
    assert len(parse_openhtf_record(phases(10), max_phases=10).phases) == 10


def test_record_with_one_phase_too_many_is_refused() -> None:
    err = invalid(phases(11), max_phases=10)
    assert "10 phases" in err.message


def test_default_phase_limit_is_500() -> None:
    assert len(parse_openhtf_record(phases(500)).phases) == 500
    invalid(phases(501))


def test_record_with_exactly_max_measurements_is_accepted() -> None:
    assert len(parse_openhtf_record(phases(4, 5), max_measurements=20).measurements) == 20


def test_record_with_one_measurement_too_many_across_phases_is_refused() -> None:
    err = invalid(phases(3, 7), max_measurements=20)
    assert "20 measurements" in err.message


def test_default_measurement_limit_is_5000() -> None:
    assert len(parse_openhtf_record(phases(50, 100)).measurements) == 5000
    invalid(phases(50, 101))


# ------------------------------------------------------------------ arbitrary input
# Values json.loads can produce (Python's json accepts NaN and Infinity, and integers up to 4300 digits).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**4000), max_value=10**4000)
    | st.sampled_from([2**1024, -(2**1024), 10**400])  # beyond float range: float() raises OverflowError
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=200)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=30,
)
validator_texts = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda lo, hi: f"{lo} <= x <= {hi}",
        st.floats() | st.integers() | st.text(max_size=5),
        st.floats() | st.integers() | st.text(max_size=5),
    ),
    st.builds(lambda v: f"x <= {v}", st.floats() | st.integers(min_value=-(10**400), max_value=10**400)),
    st.builds(lambda v: f"{v} <= x", st.floats() | st.integers()),
    st.builds(lambda v: f"x == {v}", st.floats() | st.text(max_size=5)),
)
measurements = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=140) | json_values,
        "outcome": st.sampled_from(["PASS", "FAIL", "UNSET"]) | json_values,
        "measured_value": json_values,
        "validators": st.lists(validator_texts | json_values, max_size=3) | json_values,
        "lower": json_values,
        "upper": json_values,
        "units": json_values | st.fixed_dictionaries({"name": json_values}),
    },
)
phase_objects = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=140) | json_values,
        "outcome": st.sampled_from(["PASS", "FAIL"]) | json_values,
        "start_time_millis": st.integers(min_value=-5, max_value=10**16) | json_values,
        "end_time_millis": st.integers(min_value=-5, max_value=10**16) | json_values,
        "measurements": st.dictionaries(st.text(max_size=10), measurements | json_values, max_size=4)
        | st.lists(measurements | json_values, max_size=4)
        | json_values,
    },
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "dut_id": st.from_regex(SERIAL_PATTERN, fullmatch=True) | json_values,
        "station_id": st.text(max_size=140) | json_values,
        "outcome": st.sampled_from([o.value for o in TestOutcome]) | json_values,
        "start_time_millis": st.integers(min_value=-5, max_value=10**16) | json_values,
        "end_time_millis": st.integers(min_value=-5, max_value=10**16) | json_values,
        "phases": st.lists(phase_objects | json_values, max_size=4) | json_values,
    },
)


names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=128)
well_named_measurements = st.fixed_dictionaries(
    {"name": names, "measured_value": json_values},
    optional={
        "outcome": st.sampled_from(["PASS", "FAIL"]),
        "validators": st.lists(validator_texts | json_values, max_size=3),
        "lower": json_values,
        "upper": json_values,
        "units": json_values | st.fixed_dictionaries({"name": json_values}),
    },
)
well_named_phases = st.fixed_dictionaries(
    {
        "name": names,
        "measurements": st.dictionaries(names, well_named_measurements, max_size=3)
        | st.lists(well_named_measurements, max_size=3),
    },
    optional={"outcome": st.sampled_from(["PASS", "FAIL"])},
)


@st.composite
def well_framed_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record whose frame (serial, station, outcome, times) is valid, so the parser reaches every
    phase and measurement, whose contents are arbitrary."""
    start = draw(st.integers(min_value=0, max_value=10**12))
    return {
        "dut_id": draw(st.from_regex(SERIAL_PATTERN, fullmatch=True)),
        "station_id": "station-1",
        "outcome": draw(st.sampled_from([o.value for o in TestOutcome])),
        "start_time_millis": start,
        "end_time_millis": start + draw(st.integers(min_value=0, max_value=10**6)),
        "phases": draw(st.lists(well_named_phases | phase_objects, max_size=4)),
    }


def parse_or_refuse(data: Any) -> None:
    try:
        parsed = parse_openhtf_record(data, max_phases=3, max_measurements=6)
    except FabGuardError:
        return
    assert isinstance(parsed, TestRecord)
    assert parsed.start_ms <= parsed.end_ms
    assert len(parsed.phases) <= 3
    assert len(parsed.measurements) <= 6


@pytest.mark.slow
@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_values_raise_nothing_but_fabguard_errors(data: Any) -> None:
    parse_or_refuse(data)


@pytest.mark.slow
@settings(max_examples=examples(500), suppress_health_check=[HealthCheck.too_slow])
@given(record_like)
def test_arbitrary_record_shaped_objects_raise_nothing_but_fabguard_errors(data: Any) -> None:
    parse_or_refuse(data)


@pytest.mark.slow
@settings(max_examples=examples(500), suppress_health_check=[HealthCheck.too_slow])
@given(well_framed_records())
def test_arbitrary_phases_and_measurements_raise_nothing_but_fabguard_errors(data: Any) -> None:
    parse_or_refuse(data)


@pytest.mark.slow
@settings(max_examples=examples(500), suppress_health_check=[HealthCheck.too_slow])
@given(well_framed_records())
def test_a_record_stored_as_text_reads_back_as_the_parser_read_it(data: Any) -> None:
    """What the analytics fold reads back from the stored text is what the checks saw when it was stored:
    NaN and infinities written as null, integers past 64 bits and lone surrogates by the standard library."""
    try:
        parsed = parse_openhtf_record(copy.deepcopy(data))
    except FabGuardError:
        return
    text = stored_text(data)
    assert text == stored_text(json.loads(text))  # canonical: storing it again changes nothing
    phases, measurements = stored_rows(json.loads(text))
    assert phases == [(p.name, p.outcome) for p in parsed.phases]
    # Keys are sorted when stored, so measurements given as an object come back in the order of their
    # keys, not as uploaded; every figure is per measurement, so only the multiset matters.
    assert Counter(measurements) == Counter(
        (m.phase, m.name, m.outcome, m.value, m.lower, m.upper) for m in parsed.measurements
    )


def test_stored_text_is_compact_sorted_json_whichever_writer_wrote_it() -> None:
    data = {"b": [1.5, None, "\u00e9"], "a": {"y": 2, "x": float("nan")}}
    assert stored_text(data) == '{"a":{"x":null,"y":2},"b":[1.5,null,"\u00e9"]}'
    big = {"b": 10**30, "a": 1}
    assert stored_text(big) == '{"a":1,"b":1000000000000000000000000000000}'
    assert json.loads(stored_text({"s": "\ud800"})) == {"s": "\ud800"}
