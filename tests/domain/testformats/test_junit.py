"""JUnit XML from a real ``pytest --junitxml`` run of a small station suite (tests/data/testformats/junit)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.domain.testformats import detect_format, parse_test_record
from fabguard.domain.values import TestOutcome

SUITE = Path(__file__).parents[2] / "data" / "testformats" / "junit" / "station_suite.py"


def _run_station(tmp_path: Path, vcc: str) -> bytes:
    """Run the station suite in its own directory (none of this repository's pytest configuration)."""
    shutil.copy(SUITE, tmp_path / SUITE.name)
    (tmp_path / "pytest.ini").write_text("[pytest]\njunit_family = xunit1\n")
    out = tmp_path / "station.xml"
    env = {**os.environ, "STATION_VCC": vcc, "STATION_SERIAL": "SN-JUNIT-0001"}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={out}", SUITE.name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return out.read_bytes()


def test_a_passing_pytest_run_is_a_passing_record_with_its_measurements(tmp_path: Path) -> None:
    data = _run_station(tmp_path, "3.31")
    assert detect_format(data) == "junit"
    record = parse_test_record(data, "junit")
    assert (record.serial.value, record.declared_station_id, record.outcome) == (
        "SN-JUNIT-0001",
        "pytest-station-1",
        TestOutcome.PASS,
    )
    assert [(p.name, p.outcome) for p in record.phases] == [
        ("test_supply_voltage", "PASS"),
        ("test_idle_current", "PASS"),
        ("test_firmware_version", "PASS"),
        ("test_button_pressed", "PASS"),
        ("test_radio", "SKIP"),
    ]
    by_name = {m.name: m for m in record.measurements}
    assert set(by_name) == {"vcc", "idle_current", "firmware"}
    vcc = by_name["vcc"]
    assert (vcc.phase, vcc.value, vcc.lower, vcc.upper, vcc.units, vcc.comparison, vcc.outcome) == (
        "test_supply_voltage",
        3.31,
        3.2,
        3.4,
        "V",
        "GELE",
        "PASS",
    )
    assert (by_name["firmware"].value, by_name["firmware"].text) == (None, "1.4.2")
    assert record.end_ms >= record.start_ms


def test_a_failing_pytest_run_is_a_failed_record_and_its_measurement_failed(tmp_path: Path) -> None:
    record = parse_test_record(_run_station(tmp_path, "3.52"))
    assert record.outcome is TestOutcome.FAIL
    vcc = next(m for m in record.measurements if m.name == "vcc")
    assert (vcc.value, vcc.outcome) == (3.52, "FAIL")


def test_without_a_station_property_the_hostname_names_the_station_and_without_a_serial_it_is_refused() -> None:
    data = b"""<testsuites><testsuite name="pytest" hostname="line-pc-3" timestamp="2024-03-05T10:00:00+00:00"
    time="1.5"><properties><property name="serial" value="SN-9"/></properties>
    <testcase classname="s" name="test_a" time="1"/></testsuite></testsuites>"""
    assert parse_test_record(data).declared_station_id == "line-pc-3"
    with pytest.raises(FabGuardError) as refused:
        parse_test_record(data.replace(b'name="serial"', b'name="lot"'))
    assert refused.value.code == "test_record_format_invalid" and "serial" in refused.value.message
