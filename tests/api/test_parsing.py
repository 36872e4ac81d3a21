"""The edge parses a provisioning request once: a UnitRequest, or an UnparsedUnit with the refusal it gets."""

from __future__ import annotations

from fabguard.api.parsing import batch_unit_request, est_unit_request, order_to_provision, unit_request
from fabguard.domain.errors import InvalidRequest, Refusal
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.provisioning.unit_requests import UnitRequest, UnparsedUnit

MAX = 16384


def test_a_well_formed_request_becomes_a_unit_request() -> None:
    device = SimulatedDevice("SN-P1")
    unit = unit_request("po-1", "SN-P1", device.csr_pem(), max_csr_bytes=MAX)
    assert isinstance(unit, UnitRequest)
    assert (unit.order_id.value, unit.serial.value, unit.csr.facts.subject_serial) == ("po-1", "SN-P1", "SN-P1")


def test_an_order_id_no_order_can_have_is_order_not_found_with_todays_message() -> None:
    for value, shown in (("PO 1", "PO 1"), ("p" * 80, "p" * 63), (7, "7"), (None, "None")):
        try:
            order_to_provision(value)
        except Refusal as refusal:
            assert (refusal.code, refusal.message) == ("order_not_found", f"no order {shown!r}")
        else:
            raise AssertionError(value)


def test_the_serial_is_checked_before_the_csr_and_the_csr_before_the_order() -> None:
    device = SimulatedDevice("SN-P1")
    bad_serial = unit_request(None, "bad serial", "junk", max_csr_bytes=MAX)
    bad_csr = unit_request(None, "SN-P1", "junk", max_csr_bytes=MAX)
    bad_order = unit_request(None, "SN-P1", device.csr_pem(), max_csr_bytes=MAX)
    codes = [u.error.code for u in (bad_serial, bad_csr, bad_order) if isinstance(u, UnparsedUnit)]
    assert codes == ["serial_invalid", "csr_invalid", "order_not_found"]


def test_an_unparsed_unit_keeps_the_strings_it_was_given() -> None:
    unit = unit_request("PO 1", "bad serial", 5, max_csr_bytes=MAX)
    assert isinstance(unit, UnparsedUnit)
    assert (unit.order_id, unit.serial) == ("PO 1", "bad serial")
    unit = unit_request(5, ["x"], "junk", max_csr_bytes=MAX)
    assert isinstance(unit, UnparsedUnit) and (unit.order_id, unit.serial) == (None, None)


def test_a_batch_unit_without_string_fields_is_an_invalid_request_not_a_refusal() -> None:
    unit = batch_unit_request("po-1", "SN-P1", None, max_csr_bytes=MAX)
    assert isinstance(unit, UnparsedUnit)
    assert isinstance(unit.error, InvalidRequest) and not isinstance(unit.error, Refusal)
    assert unit.serial == "SN-P1"


def test_est_takes_the_serial_from_the_csr_subject() -> None:
    device = SimulatedDevice("SN-E1")
    unit = est_unit_request("po-1", device.csr_pem().encode(), max_csr_bytes=MAX)
    assert isinstance(unit, UnitRequest) and unit.serial.value == "SN-E1"
    junk = est_unit_request("po-1", b"junk", max_csr_bytes=MAX)
    assert isinstance(junk, UnparsedUnit) and (junk.error.code, junk.serial) == ("csr_invalid", None)
