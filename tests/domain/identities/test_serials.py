"""Serial formats: the n-th serial, its check character, and refusals of bad formats and foreign serials."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.iso7064 import mod_37_36

from fabguard.domain.errors import ERROR_STATUS, FabGuardError
from fabguard.domain.identities import CheckAlgorithm, SerialFormat
from fabguard.domain.values import Serial


def _code(call: object) -> str:
    with pytest.raises(FabGuardError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_the_nth_serial_is_prefix_counter_and_the_iso7064_check_character() -> None:
    fmt = SerialFormat("ACME-26-", 6)
    serial = fmt.serial(123)
    assert isinstance(serial, Serial)
    assert str(serial) == "ACME-26-000123" + mod_37_36.calc_check_digit("ACME26000123")
    assert fmt.counter_of(serial) == 123


def test_luhn_mod_36_formats_check_with_luhn() -> None:
    from stdnum import luhn

    fmt = SerialFormat("x1.", 4, CheckAlgorithm.LUHN_MOD_36)
    assert str(fmt.serial(7)) == "x1.0007" + luhn.calc_check_digit(
        "X10007", alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    )


@given(
    prefix=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,31}", fullmatch=True) | st.just(""),
    width=st.integers(1, 18),
    check=st.sampled_from(CheckAlgorithm),
    data=st.data(),
)
def test_every_serial_of_a_format_is_a_valid_serial_and_reads_back(
    prefix: str, width: int, check: CheckAlgorithm, data: st.DataObject
) -> None:
    fmt = SerialFormat(prefix, width, check)
    n = data.draw(st.integers(0, fmt.capacity - 1))
    serial = fmt.serial(n)
    assert "/" not in str(serial)
    assert len(str(serial)) == fmt.length <= 64
    assert fmt.counter_of(serial) == n
    assert fmt.counter_of(str(serial)) == n


@given(n=st.integers(0, 10**8 - 1), data=st.data())
def test_a_mistyped_character_is_always_refused(n: int, data: st.DataObject) -> None:
    fmt = SerialFormat("FG-", 8)
    text = str(fmt.serial(n))
    i = data.draw(st.integers(3, len(text) - 1))  # a character of the counter or the check
    typo = data.draw(st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ").filter(lambda c: c != text[i]))
    assert _code(lambda: fmt.counter_of(text[:i] + typo + text[i + 1 :])) == "serial_not_in_format"


def test_adjacent_swaps_are_refused_but_for_the_few_a_hybrid_mod_37_36_check_cannot_see() -> None:
    """ISO/IEC 7064's hybrid MOD 37,36 catches every single substitution but not every adjacent swap
    (``FG-000007805`` and ``FG-000008705`` both check): over 3,000 serials, at most 1 % of swaps pass."""
    fmt = SerialFormat("FG-", 8)
    swaps = passed = 0
    for n in range(0, 3_000_000, 1000):
        text = str(fmt.serial(n))
        for j in range(3, len(text) - 1):
            if text[j] == text[j + 1]:
                continue
            swaps += 1
            try:
                fmt.counter_of(text[:j] + text[j + 1] + text[j] + text[j + 2 :])
                passed += 1
            except FabGuardError:
                pass
    assert swaps > 10_000
    assert passed / swaps < 0.01


@pytest.mark.parametrize(
    "serial",
    ["OTHER-000001X", "FG-0000001", "FG-00000001", "FG-0000A001Z", "FG-00000001ZZ", ""],
    ids=["other-prefix", "short", "no-check", "letter-in-counter", "long", "empty"],
)
def test_a_serial_not_of_the_format_is_refused(serial: str) -> None:
    assert _code(lambda: SerialFormat("FG-", 8).counter_of(serial)) == "serial_not_in_format"


def test_past_the_last_counter_is_serial_range_exhausted_with_409() -> None:
    fmt = SerialFormat("S", 2)
    assert str(fmt.serial(99)).startswith("S99")
    assert _code(lambda: fmt.serial(100)) == "serial_range_exhausted"
    assert ERROR_STATUS["serial_range_exhausted"] == 409
    assert _code(lambda: fmt.serial(-1)) == "invalid_index"


@pytest.mark.parametrize(
    ("prefix", "width"),
    [("A/B-", 6), ("-AB", 6), ("AB CD", 6), ("ÄB", 6), ("A" * 33, 6), ("AB", 0), ("AB", 19), ("AB", True)],
    ids=["slash", "leading-dash", "space", "non-ascii", "long-prefix", "no-digits", "too-wide", "bool-width"],
)
def test_a_bad_format_is_invalid_serial_format(prefix: str, width: int) -> None:
    assert _code(lambda: SerialFormat(prefix, width)) == "invalid_serial_format"


def test_an_unknown_check_algorithm_is_invalid_serial_format() -> None:
    assert _code(lambda: SerialFormat("A", 4, "crc32")) == "invalid_serial_format"  # type: ignore[arg-type]
