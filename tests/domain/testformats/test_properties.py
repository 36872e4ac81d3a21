"""Hypothesis over each reader: no input raises anything but a declared 4xx refusal, and what parses is
stored in OpenHTF form and reads back equal."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabguard.domain.errors import FabGuardError, is_declared
from fabguard.domain.testformats import FORMATS, openhtf_json, parse_test_records
from fabguard.domain.testrecord import parse_openhtf_record, stored_text

PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DATA = Path(__file__).parents[2] / "data" / "testformats"
SEEDS = [
    (DATA / "atml" / "teststand_atml202_failed.xml").read_bytes(),
    (DATA / "atml" / "teststand_atml500_passed.xml").read_bytes(),
    (DATA / "atml" / "teststand_atml601_failed.xml").read_bytes(),
    (DATA / "teststand_xml" / "TsWithoutWats.xml").read_bytes(),
    (DATA / "csv" / "station_run.csv").read_bytes(),
    b"""<testsuites><testsuite name="pytest" hostname="h" timestamp="2024-03-05T10:00:00+00:00" time="1.5">
<properties><property name="serial" value="SN-9"/></properties><testcase classname="s" name="test_a" time="1">
<properties><property name="v" value="3.3"/><property name="v.lower" value="3"/></properties></testcase>
</testsuite></testsuites>""",
]


def _parse(data: bytes, fmt: str = "auto") -> None:
    try:
        records = parse_test_records(data, fmt)
    except FabGuardError as refused:
        assert is_declared(refused.code), refused.code
        assert 400 <= refused.status < 500, refused.status
        return
    for record in records:
        stored = json.loads(stored_text(openhtf_json(record)))
        assert parse_openhtf_record(stored, max_phases=5000) == record


@PROPERTY
@given(st.binary(max_size=2000), st.sampled_from(("auto", *FORMATS)))
def test_any_bytes_are_records_or_a_declared_refusal(data: bytes, fmt: str) -> None:
    _parse(data, fmt)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real or fixture file with a few slices replaced, removed or repeated."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        length = draw(st.integers(0, 40))
        action = draw(st.sampled_from(["replace", "delete", "repeat", "text"]))
        if action == "delete":
            del data[at : at + length]
        elif action == "repeat":
            data[at:at] = data[at : at + length]
        elif action == "text":
            data[at : at + length] = draw(st.text(max_size=12)).encode()
        else:
            data[at : at + length] = draw(st.binary(max_size=length))
    return bytes(data)


@PROPERTY
@given(mutated())
def test_a_mutated_file_is_records_or_a_declared_refusal(data: bytes) -> None:
    _parse(data)


@PROPERTY
@given(st.sampled_from(SEEDS[:4]), st.sampled_from(["name", "value", "comparator", "Value"]), st.text(max_size=30))
def test_a_changed_attribute_or_value_is_records_or_a_declared_refusal(seed: bytes, key: str, text: str) -> None:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").replace("'", "&apos;")
    marker = f'{key} = "'.encode() if key != "Value" else b"<Value>"
    at = seed.find(marker)
    if at < 0:
        marker = f'{key}="'.encode()
        at = seed.find(marker)
    if at < 0:
        return
    start = at + len(marker)
    end = seed.find(b'"' if key != "Value" else b"<", start)
    _parse(seed[:start] + escaped.encode("utf-8") + seed[end:])
