"""A small station test suite, run by tests/domain/testformats/test_junit.py with ``pytest --junitxml``.

It stands for a line's own pytest-based station: each test is a step, ``record_property`` gives its
measurements (a value, and ``.lower``/``.upper``/``.units`` beside it), and the suite names its unit.
"""

import os

import pytest

SERIAL = os.environ.get("STATION_SERIAL", "SN-JUNIT-0001")
VCC = float(os.environ.get("STATION_VCC", "3.31"))


@pytest.fixture(scope="session", autouse=True)
def unit(record_testsuite_property):
    record_testsuite_property("serial", SERIAL)
    record_testsuite_property("station", "pytest-station-1")


def test_supply_voltage(record_property):
    record_property("vcc", VCC)
    record_property("vcc.lower", 3.2)
    record_property("vcc.upper", 3.4)
    record_property("vcc.units", "V")
    assert 3.2 <= VCC <= 3.4


def test_idle_current(record_property):
    record_property("idle_current", 11.5)
    record_property("idle_current.lower", 8.0)
    record_property("idle_current.upper", 16.0)
    record_property("idle_current.units", "mA")


def test_firmware_version(record_property):
    record_property("firmware", "1.4.2")


def test_button_pressed():
    assert True


@pytest.mark.skip(reason="no radio on this variant")
def test_radio():
    pass
