"""Check characters: ISO/IEC 7064 MOD 37,36 and Luhn mod 36 for serials, Verhoeff for Matter's manual codes.

Each function computes the character to append; a string with its check character is valid when
recomputing over its body gives the same character. The alphabet of the first two is ``0-9A-Z``
(values 0-35); callers upper-case letters first.
"""

from __future__ import annotations

from fabguard.domain.errors import InvalidRequest

ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"


def _values(text: str, alphabet: str) -> list[int]:
    try:
        return [alphabet.index(c) for c in text]
    except ValueError:
        raise InvalidRequest(f"{text!r} has a character outside {alphabet}", code="invalid_format") from None


def iso7064_mod_37_36(text: str) -> str:
    """ISO/IEC 7064 hybrid system MOD 37,36 over ``0-9A-Z``: catches every single substitution and almost
    every transposition of two adjacent characters (docs/identities.md)."""
    m = len(ALPHANUMERIC)  # 36
    p = m
    for value in _values(text, ALPHANUMERIC):
        s = (p + value) % m or m
        p = (2 * s) % (m + 1)
    return ALPHANUMERIC[(m + 1 - p) % m]


def luhn_mod_36(text: str) -> str:
    """Luhn mod N with N = 36 over ``0-9A-Z``: from the right, every second value doubled and its
    base-36 digits summed; the check makes the total a multiple of 36."""
    n = len(ALPHANUMERIC)
    total = 0
    for i, value in enumerate(reversed(_values(text, ALPHANUMERIC))):
        addend = value * 2 if i % 2 == 0 else value
        total += addend // n + addend % n
    return ALPHANUMERIC[(n - total % n) % n]


# Verhoeff's dihedral group D5: multiplication, the position permutation and inverses.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
# The position permutation: the i-th power of (1 5 7 6 2 8 3 0 9 4), i = position mod 8.
_P1 = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)


def _powers(permutation: tuple[int, ...], count: int) -> tuple[tuple[int, ...], ...]:
    out = [tuple(range(len(permutation)))]
    while len(out) < count:
        out.append(tuple(permutation[v] for v in out[-1]))
    return tuple(out)


_P = _powers(_P1, 8)
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def verhoeff(digits: str) -> str:
    """The Verhoeff check digit of a decimal string (Matter's manual pairing code, 5.1.4.1)."""
    c = 0
    for i, value in enumerate(reversed(_values(digits, _DIGITS))):
        c = _D[c][_P[(i + 1) % 8][value]]
    return _DIGITS[_INV[c]]
