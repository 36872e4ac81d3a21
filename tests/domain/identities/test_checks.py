"""The check characters against python-stdnum, an independent implementation of each algorithm."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn
from stdnum import verhoeff as stdnum_verhoeff
from stdnum.iso7064 import mod_37_36

from fabguard.domain.errors import FabGuardError
from fabguard.domain.identities import iso7064_mod_37_36, luhn_mod_36, verhoeff
from fabguard.domain.identities.checks import ALPHANUMERIC

alphanumeric = st.text(alphabet=ALPHANUMERIC, min_size=1, max_size=40)
decimal = st.text(alphabet="0123456789", min_size=1, max_size=30)


@given(alphanumeric)
def test_iso7064_mod_37_36_is_stdnums(text: str) -> None:
    assert iso7064_mod_37_36(text) == mod_37_36.calc_check_digit(text)
    assert mod_37_36.is_valid(text + iso7064_mod_37_36(text))


@given(alphanumeric)
def test_luhn_mod_36_is_stdnums_luhn_over_the_alphanumeric_alphabet(text: str) -> None:
    assert luhn_mod_36(text) == luhn.calc_check_digit(text, alphabet=ALPHANUMERIC)


@given(decimal)
def test_verhoeff_is_stdnums(digits: str) -> None:
    assert verhoeff(digits) == stdnum_verhoeff.calc_check_digit(digits)


def test_verhoeff_gives_the_check_digit_of_the_chip_test_manual_code() -> None:
    assert verhoeff("3497011233") == "2"  # 3497-011-2332


@given(alphanumeric, st.data())
def test_iso7064_catches_every_single_substitution_and_adjacent_transposition(text: str, data: st.DataObject) -> None:
    check = iso7064_mod_37_36(text)
    i = data.draw(st.integers(0, len(text) - 1))
    other = data.draw(st.sampled_from(ALPHANUMERIC).filter(lambda c: c != text[i]))
    assert iso7064_mod_37_36(text[:i] + other + text[i + 1 :]) != check
    if i + 1 < len(text) and text[i] != text[i + 1]:
        swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        assert iso7064_mod_37_36(swapped) != check


@pytest.mark.parametrize("function", [iso7064_mod_37_36, luhn_mod_36, verhoeff])
def test_a_character_outside_the_alphabet_is_an_error_with_a_code(function: object) -> None:
    with pytest.raises(FabGuardError) as caught:
        function("ab/")  # type: ignore[operator]
    assert caught.value.code == "invalid_format"
