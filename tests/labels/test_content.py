"""What a label may carry, and the field-check URL."""

from __future__ import annotations

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.domain.identities import MacAddress
from fabguard.domain.values import Serial
from fabguard.labels import UnitLabel, field_check_url


def _code(call: object) -> str:
    with pytest.raises(FabGuardError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_the_lines_beside_the_qr_code() -> None:
    label = UnitLabel(
        Serial("FG-00000042K"),
        "MT:634J042C00KA0648G00",
        (MacAddress(0x001B63000000), MacAddress(0x001B63000001)),
        manual_code="3497-011-2332",
        title="Plug",
    )
    assert label.lines() == [
        "Plug",
        "S/N FG-00000042K",
        "MAC 00:1B:63:00:00:00",
        "MAC 00:1B:63:00:00:01",
        "Code 3497-011-2332",
    ]


def test_a_field_check_url_carries_the_serial() -> None:
    assert field_check_url("https://check.example.com/unit", Serial("FG-1:2.3")) == (
        "https://check.example.com/unit?serial=FG-1:2.3"
    )


@pytest.mark.parametrize(
    "base",
    [
        "http://check.example.com",
        "https://check.example.com/u?x=1",
        "https://c.example/#f",
        "https://c ex",
        "ftp://x",
        "",
    ],
)
def test_a_field_check_base_that_is_not_a_plain_https_url_is_invalid_label(base: str) -> None:
    assert _code(lambda: field_check_url(base, Serial("FG-1"))) == "invalid_label"


@pytest.mark.parametrize(
    "changes",
    [
        {"qr": ""},
        {"qr": "x" * 301},
        {"qr": "MT:\n"},
        {"qr": "Zürich"},
        {"macs": tuple(MacAddress(i) for i in range(9))},
        {"macs": ("00:1B:63:00:00:00",)},
        {"manual_code": "3497-011"},
        {"manual_code": "abc"},
        {"title": "x" * 41},
        {"title": ""},
        {"serial": "FG-1"},
    ],
)
def test_a_label_that_breaks_a_rule_is_invalid_label(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {"serial": Serial("FG-1"), "qr": "MT:634J042C00KA0648G00"} | changes
    assert _code(lambda: UnitLabel(**fields)) == "invalid_label"  # type: ignore[arg-type]
