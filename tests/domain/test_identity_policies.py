"""The pure rules of identity pools and their allocation (issue 29): each alone, and their order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabguard.domain.errors import FabGuardError, Refusal
from fabguard.domain.identities.allocation import (
    AllocationDecision,
    AllocationRequest,
    decide_allocation,
)
from fabguard.domain.identities.matter_ids import PaiIds
from fabguard.domain.identities.pools import IdentityPool, mac_block_apart, pool_from_json, pool_json
from fabguard.domain.issuance import IdentityFacts, authorize_issuance, identities_left, serial_allocated
from fabguard.domain.values import OrderState
from tests.domain.test_issuance import NOW, allowed_request


def refused(fn: object, *args: object) -> str:
    with pytest.raises(Refusal) as exc:
        fn(*args)  # type: ignore[operator]
    return exc.value.code


def test_a_serial_must_be_allocated_to_its_order_where_the_product_says_so() -> None:
    r = allowed_request()
    serial_allocated(r)  # no pools: nothing to say
    serial_allocated(replace(r, identity=IdentityFacts(serials_required=True, allocated_order_id="po-1")))
    assert (
        refused(serial_allocated, replace(r, identity=IdentityFacts(serials_required=True))) == "serial_not_allocated"
    )
    elsewhere = replace(r, identity=IdentityFacts(allocated_order_id="po-2"))  # even where not required
    assert refused(serial_allocated, elsewhere) == "serial_not_allocated"
    # Among the issuance policies, after the CSR names the serial and before the test gate.
    both = replace(r, identity=IdentityFacts(serials_required=True), history=replace(r.history, latest_test=None))
    assert refused(authorize_issuance, both) == "serial_not_allocated"


def test_a_unit_drawing_at_provisioning_needs_quota_for_identities_and_a_pool_left() -> None:
    r = allowed_request()
    identities_left(replace(r, identity=IdentityFacts(draws=False, exhausted="MAC block x")))  # draws nothing
    identities_left(replace(r, identity=IdentityFacts(draws=True, order_allocated=9)))
    assert (
        refused(identities_left, replace(r, identity=IdentityFacts(draws=True, order_allocated=10)))
        == "quota_exhausted"
    )
    empty = replace(r, identity=IdentityFacts(draws=True, exhausted="MAC block x"))
    assert refused(identities_left, empty) == "identity_pool_exhausted"


def allocation(**kw: object) -> AllocationRequest:
    r = allowed_request()
    base = AllocationRequest(
        fixture=r.fixture,
        order=r.order,
        now=NOW,
        pool_declared=True,
        draws_serial=True,
        serial=None,
        serial_order_id=None,
        order_allocated=0,
        exhausted=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_allocation_policies_each_refuse_with_their_code_in_order() -> None:
    assert decide_allocation(allocation()) is AllocationDecision.ALLOCATE
    agreeing = allocation(matter_pai=("pai", PaiIds(0xFFF1, 0x8000)), matter_ids=(0xFFF1, 0x8000))
    assert decide_allocation(agreeing) is AllocationDecision.ALLOCATE
    r = allowed_request()
    cases = {
        "fixture_revoked": allocation(fixture=replace(r.fixture, revoked=True), exhausted="x"),
        "wrong_site": allocation(fixture=replace(r.fixture, site_id="cm-b"), pool_declared=False),
        "order_inactive": allocation(order=replace(r.order, state=OrderState.SUSPENDED), pool_declared=False),
        "order_expired": allocation(now=NOW.replace(year=2031), pool_declared=False),
        "identity_pool_missing": allocation(pool_declared=False, order_allocated=99),
        "allocation_serial_invalid": allocation(serial="S-1", exhausted="x"),
        "serial_already_allocated": allocation(draws_serial=False, serial="S-1", serial_order_id="po-9", exhausted="x"),
        "quota_exhausted": allocation(order_allocated=10, exhausted="x"),
        "identity_pool_exhausted": allocation(
            exhausted="serial format x", matter_pai=("pai", PaiIds(0xFFF1)), matter_ids=(1, 1)
        ),
        "matter_ids_mismatch": allocation(matter_pai=("pai", PaiIds(0xFFF1, 0x8000)), matter_ids=(0xFFF1, 0x8001)),
    }
    for code, request in cases.items():
        assert refused(decide_allocation, request) == code, code
    assert refused(decide_allocation, allocation(draws_serial=False)) == "allocation_serial_invalid"
    # The same station serial on its own order: given again, even with the pool now empty.
    again = allocation(draws_serial=False, serial="S-1", serial_order_id="po-1", exhausted="x", order_allocated=10)
    assert decide_allocation(again) is AllocationDecision.REPLAY


def test_pool_declarations_round_trip_and_refuse_what_cannot_be_allocated() -> None:
    declared = {
        "serials": {"prefix": "A-", "width": 4, "check": "luhn-mod-36", "required": True},
        "macs": {"prefix": "00:1B:63", "per_unit": 4, "first": 8, "count": 64},
        "matter": {"vendor_id": 1, "product_id": 2, "flow": 0, "discovery": 34, "iterations": 1000},
    }
    pool = pool_from_json(declared)
    assert pool_from_json(pool_json(pool)) == pool and pool.mac_capacity == 16 and pool.serial_capacity == 10**4
    for bad, code in (
        ({}, "invalid_identity_pool"),
        ({"serials": {"required": True, "width": 0}}, "invalid_serial_format"),
        ({"serials": {"check": "crc"}}, "invalid_serial_format"),
        ({"macs": {"prefix": "00-1B-63", "per_unit": "2"}}, "invalid_identity_pool"),
        ({"matter": {"vendor_id": 0, "product_id": 1}}, "invalid_identity_pool"),
        ({"serials": "A-"}, "invalid_identity_pool"),
    ):
        with pytest.raises(FabGuardError) as exc:
            pool_from_json(bad)
        assert exc.value.code == code, bad
    with pytest.raises(FabGuardError) as required:
        IdentityPool(serials_required=True, macs=pool.macs)
    assert required.value.code == "invalid_identity_pool"
    mac_block_apart("a", (0, 10), [("a", 0, 10), ("b", 10, 20)])
    with pytest.raises(FabGuardError):
        mac_block_apart("a", (0, 11), [("b", 10, 20)])
