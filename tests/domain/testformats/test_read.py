"""The one entry: format detection, safe XML, limits, and the stored form every format shares."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.domain.testformats import FormatLimits, detect_format, openhtf_json, parse_test_record, parse_test_records
from fabguard.domain.testrecord import parse_openhtf_record, stored_rows, stored_text
from fabguard.fixture.openhtf_records import openhtf_record

DATA = Path(__file__).parents[2] / "data" / "testformats"
FIXTURES = sorted(p for p in DATA.rglob("*") if p.suffix in (".xml", ".csv"))


def _refused(data: bytes, code: str, **kwargs: object) -> str:
    with pytest.raises(FabGuardError) as refused:
        parse_test_records(data, **kwargs)  # type: ignore[arg-type]
    assert refused.value.code == code, refused.value.message
    return refused.value.message


def test_openhtf_json_is_read_as_today() -> None:
    record = openhtf_record("SN-HTF-1", "fx-1", fail=False, rng=random.Random(3))
    data = json.dumps(record).encode()
    assert detect_format(data) == "openhtf"
    assert parse_test_record(data) == parse_openhtf_record(record)
    assert "line 1, column" in _refused(data[:-1], "test_record_format_invalid")


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_format_is_stored_in_openhtf_form_and_reads_back_equal(path: Path) -> None:
    for record in parse_test_records(path.read_bytes()):
        stored = json.loads(stored_text(openhtf_json(record)))
        assert parse_openhtf_record(stored, max_phases=5000) == record
        phases, measurements = stored_rows(stored)
        assert len(phases) == len(record.phases) and len(measurements) == len(record.measurements)


def test_a_format_named_that_the_file_is_not_is_refused() -> None:
    atml = (DATA / "atml" / "teststand_atml601_passed.xml").read_bytes()
    assert "is not junit" in _refused(atml, "test_record_format_unknown", format="junit")
    assert "not one of" in _refused(atml, "test_record_format_unknown", format="stdf")
    _refused(b"\x00\x01binary", "test_record_format_unknown")
    _refused(b"<html><body/></html>", "test_record_format_unknown")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite timestamp="2024-01-01T00:00:00">&lol3;</testsuite>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Reports>&x;</Reports>"""
REMOTE_DTD = b"""<?xml version="1.0"?><!DOCTYPE Reports SYSTEM "http://127.0.0.1:9/r.dtd"><Reports/>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL, REMOTE_DTD], ids=["entities", "external", "dtd"])
def test_xml_with_a_dtd_or_entities_is_refused_before_anything_is_expanded_or_fetched(data: bytes) -> None:
    assert "DTD" in _refused(data, "test_record_format_invalid")


def test_size_depth_and_element_limits_are_refused_as_too_large() -> None:
    atml = (DATA / "atml" / "teststand_atml500_passed.xml").read_bytes()
    assert "bytes" in _refused(atml, "test_record_too_large", limits=FormatLimits(max_bytes=1000))
    assert "deeper" in _refused(atml, "test_record_too_large", limits=FormatLimits(max_depth=6))
    assert "elements" in _refused(atml, "test_record_too_large", limits=FormatLimits(max_elements=50))
    assert "steps" in _refused(atml, "test_record_too_large", limits=FormatLimits(max_phases=3))
    assert "measurements" in _refused(atml, "test_record_too_large", limits=FormatLimits(max_measurements=2))
    deep = b"<testsuites>" + b"<a>" * 10_000 + b"</a>" * 10_000 + b"</testsuites>"
    assert "line 1" in _refused(deep, "test_record_too_large")


def test_a_refusal_is_the_same_whatever_was_parsed_before() -> None:
    bad = (DATA / "atml" / "teststand_atml500_passed.xml").read_bytes().replace(b'"Passed" />', b'"Maybe" />', 1)
    first = _refused(bad, "test_record_format_invalid")
    assert _refused(bad, "test_record_format_invalid") == first
