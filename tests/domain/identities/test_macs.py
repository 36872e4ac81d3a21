"""MAC blocks: IEEE assignments of each size, N consecutive addresses per unit, exhaustion refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabguard.domain.errors import ERROR_STATUS, FabGuardError
from fabguard.domain.identities import IeeeAssignment, MacAddress, MacBlock


def _code(call: object) -> str:
    with pytest.raises(FabGuardError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


@pytest.mark.parametrize(
    ("prefix", "kind", "size", "first_address"),
    [
        ("00-1B-63", IeeeAssignment.MA_L, 2**24, "00:1B:63:00:00:00"),
        ("70:B3:D5:1", IeeeAssignment.MA_M, 2**20, "70:B3:D5:10:00:00"),
        ("70-B3-D5-7A-9", IeeeAssignment.MA_S, 2**12, "70:B3:D5:7A:90:00"),
    ],
)
def test_the_registry_notation_gives_the_assignment_and_its_size(
    prefix: str, kind: IeeeAssignment, size: int, first_address: str
) -> None:
    block = MacBlock.parse(prefix)
    assert (block.assignment, block.size, block.capacity) == (kind, size, size)
    assert str(block.first_address) == first_address
    assert [str(a) for a in block.addresses(0)] == [first_address]


def test_each_unit_gets_its_own_consecutive_addresses() -> None:
    block = MacBlock.parse("00-1B-63", per_unit=3)
    assert [str(a) for a in block.addresses(0)] == ["00:1B:63:00:00:00", "00:1B:63:00:00:01", "00:1B:63:00:00:02"]
    assert [str(a) for a in block.addresses(86)] == ["00:1B:63:00:01:02", "00:1B:63:00:01:03", "00:1B:63:00:01:04"]
    assert block.capacity == 2**24 // 3


@given(
    kind=st.sampled_from(IeeeAssignment),
    per_unit=st.integers(1, 64),
    data=st.data(),
)
def test_units_never_share_an_address_and_stay_inside_the_assignment(
    kind: IeeeAssignment, per_unit: int, data: st.DataObject
) -> None:
    prefix = data.draw(
        st.integers(0, (1 << kind.prefix_bits) - 1).filter(lambda p: not (p >> (kind.prefix_bits - 8)) & 3)
    )
    first = data.draw(st.integers(0, kind.size - per_unit))
    count = data.draw(st.none() | st.integers(per_unit, kind.size - first))
    block = MacBlock(kind, prefix, per_unit, first, count)
    a, b = (data.draw(st.integers(0, block.capacity - 1)) for _ in range(2))
    ours, theirs = block.addresses(a), block.addresses(b)
    assert len(ours) == per_unit and (a == b or not set(ours) & set(theirs))
    assert ours == tuple(MacAddress(ours[0].value + i) for i in range(per_unit))
    for address in (*ours, *theirs):
        assert address.value >> (48 - kind.prefix_bits) == prefix
        assert block.first_address.value <= address.value < block.first_address.value + block.size


def test_past_the_last_unit_is_mac_block_exhausted_with_409() -> None:
    block = MacBlock.parse("70-B3-D5-7A-9", per_unit=2, first=100, count=10)
    assert block.capacity == 5
    assert [str(a) for a in block.addresses(4)] == ["70:B3:D5:7A:90:6C", "70:B3:D5:7A:90:6D"]
    assert _code(lambda: block.addresses(5)) == "mac_block_exhausted"
    assert ERROR_STATUS["mac_block_exhausted"] == 409
    assert _code(lambda: block.addresses(-1)) == "invalid_index"
    # An MA-S holds 4096 addresses: with 3 a unit the last 1 is never handed out.
    full = MacBlock.parse("70-B3-D5-7A-9", per_unit=3)
    assert full.capacity == 1365 and full.addresses(1364)[-1].value & 0xFFF == 4094
    assert _code(lambda: full.addresses(1365)) == "mac_block_exhausted"


@pytest.mark.parametrize(
    ("prefix", "options"),
    [
        ("00-1B", {}),  # 4 hex digits: no assignment has that size
        ("00-1B-63-4", {"per_unit": 0}),
        ("00-1B-63-4", {"per_unit": 65}),
        ("00-1B-63-4", {"first": 2**20}),
        ("00-1B-63-4", {"first": 10, "count": 2**20 - 9}),
        ("00-1B-63-4", {"per_unit": 4, "count": 3}),
        ("01-1B-63", {}),  # the multicast bit
        ("02-1B-63", {}),  # locally administered
        ("00-1G-63", {}),
        ("00--1B-63", {}),
    ],
)
def test_a_bad_block_is_invalid_mac_block(prefix: str, options: dict[str, int]) -> None:
    assert _code(lambda: MacBlock.parse(prefix, **options)) == "invalid_mac_block"


def test_a_prefix_wider_than_its_assignment_is_invalid_mac_block() -> None:
    assert _code(lambda: MacBlock(IeeeAssignment.MA_L, 1 << 24)) == "invalid_mac_block"


@pytest.mark.parametrize("text", ["00:1B:63:84:45:E6", "00-1b-63-84-45-e6", "001B638445E6"])
def test_a_mac_address_parses_from_the_usual_notations(text: str) -> None:
    assert str(MacAddress.parse(text)) == "00:1B:63:84:45:E6"


@pytest.mark.parametrize("text", ["00:1B:63:84:45", "00:1B-63:84:45:E6", "00:1B:63:84:45:E6:00", "zz"])
def test_a_malformed_mac_address_is_invalid_format(text: str) -> None:
    assert _code(lambda: MacAddress.parse(text)) == "invalid_format"
