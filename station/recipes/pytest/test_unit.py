"""A unit's functional test as a station runs it (the pytest recipe's example suite)."""

import os
from collections.abc import Callable

import pytest

Record = Callable[[str, object], None]

SERIAL = os.environ.get("UNIT_SERIAL", "SN-PYTEST-0001")


@pytest.fixture(scope="session", autouse=True)
def unit(record_testsuite_property: Record) -> None:
    record_testsuite_property("serial", SERIAL)


def test_supply_voltage(record_property: Record) -> None:
    vcc = 3.31  # read from the instrument
    record_property("vcc", vcc)
    record_property("vcc.lower", 3.2)
    record_property("vcc.upper", 3.4)
    record_property("vcc.units", "V")
    assert 3.2 <= vcc <= 3.4


def test_firmware_version(record_property: Record) -> None:
    record_property("firmware", "1.4.2")
    assert "1.4.2".startswith("1.4")
