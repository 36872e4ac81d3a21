"""Value objects checked at the edge: unit serials, slugs, key-type lists."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabguard.domain.errors import InvalidRequest, NotFound, Refusal
from fabguard.domain.values import (
    CaName,
    FixtureId,
    KeyType,
    OrderId,
    OrderState,
    ProductId,
    Serial,
    SiteId,
    parse_key_types,
    recorded_order_id,
    recorded_serial,
    slug,
)

SERIAL_ALPHABET = set(string.ascii_letters + string.digits + ".:-")
SERIAL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.:-]{0,63}"


# ------------------------------------------------------------------ Serial
@pytest.mark.parametrize(
    "value",
    [
        "S",
        "7",
        "SN0000001",
        "sn-lower-case",
        "ACME:SENSOR.2024.11-0001",
        "0" * 64,
        "A" + "-" * 63,
    ],
)
def test_well_formed_serial_is_accepted_unchanged(value: str) -> None:
    serial = Serial(value)
    assert serial.value == value
    assert str(serial) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("A" * 65, id="65-chars"),
        pytest.param("A" * 10_000, id="10kB"),
        pytest.param("-SN1", id="leading-dash"),
        pytest.param(".SN1", id="leading-dot"),
        pytest.param("SN 1", id="space"),
        pytest.param(" SN1", id="leading-space"),
        pytest.param("SN1\n", id="trailing-newline"),
        pytest.param("SN1\r\nX-Injected: 1", id="crlf"),
        pytest.param("SN\x001", id="nul"),
        pytest.param("SN\x1b[31m1", id="ansi-escape"),
        pytest.param("SN\t1", id="tab"),
        pytest.param("SN1'; DROP TABLE units;--", id="sql"),
        pytest.param("' OR '1'='1", id="sql-tautology"),
        pytest.param("SN_1", id="underscore"),
        pytest.param("SN1+2", id="plus"),
        pytest.param("SN\u00e91", id="latin-accent"),
        pytest.param("SN\u0661\u0662", id="arabic-indic-digits"),
        pytest.param("\uff33\uff2e1", id="fullwidth-letters"),
        pytest.param("SN1\u200b", id="zero-width-space"),
        pytest.param("\U0001f600", id="emoji"),
        pytest.param("SN\u202e1", id="bidi-override"),
        pytest.param("A/../../x", id="path-traversal"),
        pytest.param("SN/77", id="slash"),
        pytest.param("SN\\77", id="backslash"),
        pytest.param("..", id="dot-dot"),
    ],
)
def test_malformed_serial_is_refused_as_serial_invalid(value: str) -> None:
    with pytest.raises(Refusal) as info:
        Serial(value)
    assert info.value.code == "serial_invalid"
    assert info.value.status == 400


@pytest.mark.parametrize("value", [None, 12345, 1.5, b"SN1", ["SN1"], {"serial": "SN1"}, True])
def test_non_string_serial_is_refused_as_serial_invalid(value: object) -> None:
    with pytest.raises(Refusal) as info:
        Serial(value)  # type: ignore[arg-type]
    assert info.value.code == "serial_invalid"


@pytest.mark.parametrize("value", ["SN/77", "A/../../x"])
def test_a_serial_with_a_path_separator_is_refused_and_the_message_names_what_is_allowed(value: str) -> None:
    """A serial is an identifier, never a path: the refusal says which characters a serial may hold."""
    with pytest.raises(Refusal) as info:
        Serial(value)
    assert info.value.code == "serial_invalid"
    assert "letters, digits and . : -" in info.value.message
    assert "no '/'" in info.value.message


def test_refusal_message_for_a_huge_serial_is_short() -> None:
    with pytest.raises(Refusal) as info:
        Serial("A" * 10_000)
    assert len(info.value.message) < 200


def test_serial_is_immutable_and_compares_by_value() -> None:
    a = Serial("SN1")
    assert a == Serial("SN1")
    assert a != Serial("SN2")
    assert hash(a) == hash(Serial("SN1"))
    with pytest.raises(AttributeError):
        a.value = "SN2"  # type: ignore[misc]


@given(st.text(max_size=80))
def test_any_string_serial_accepts_is_1_to_64_chars_of_the_allowed_alphabet(value: str) -> None:
    try:
        serial = Serial(value)
    except Refusal as refusal:
        assert refusal.code == "serial_invalid"
        return
    assert serial.value == value
    assert 1 <= len(value) <= 64
    assert set(value) <= SERIAL_ALPHABET
    assert value[0].isascii() and value[0].isalnum()


@given(st.from_regex(SERIAL_PATTERN, fullmatch=True))
def test_every_string_of_the_documented_form_is_accepted(value: str) -> None:
    assert re.fullmatch(SERIAL_PATTERN, value)
    assert Serial(value).value == value


@given(st.text(alphabet=sorted(SERIAL_ALPHABET), min_size=1, max_size=64))
def test_strings_of_the_alphabet_are_accepted_iff_they_start_alphanumeric(value: str) -> None:
    starts_alnum = value[0] not in ".:-"
    try:
        Serial(value)
    except Refusal:
        assert not starts_alnum
    else:
        assert starts_alnum


# ------------------------------------------------------------------ slug
@pytest.mark.parametrize("value", ["a", "0", "cm-a", "sensor-v2", "a" * 63, "1-2-3"])
def test_well_formed_slug_is_returned(value: str) -> None:
    assert slug(value, "site id") == value


@pytest.mark.parametrize(
    "value",
    ["", "a" * 64, "CM-A", "-cm", "cm_a", "cm a", "cm.a", "cm/a", "cm-a\n", "caf\u00e9", "../etc"],
)
def test_malformed_slug_is_refused_with_a_code_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        slug(value, "site id")
    assert info.value.code == "invalid_site_id"
    assert info.value.status == 422


@pytest.mark.parametrize("value", [None, 7, b"cm-a"])
def test_non_string_slug_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        slug(value, "product id")  # type: ignore[arg-type]
    assert info.value.code == "invalid_product_id"


# ------------------------------------------------------------------ key types
def test_key_types_are_parsed_in_the_given_order() -> None:
    assert parse_key_types(["ed25519", "ec-p256"]) == (KeyType.ED25519, KeyType.EC_P256)
    assert parse_key_types(("ec-p384",)) == (KeyType.EC_P384,)


def test_duplicate_key_types_are_kept_once() -> None:
    assert parse_key_types(["ec-p256", "ed25519", "ec-p256"]) == (KeyType.EC_P256, KeyType.ED25519)


@pytest.mark.parametrize("value", ["rsa-2048", "EC-P256", "ec-p256 ", "secp256k1", ""])
def test_unknown_key_type_is_refused_naming_the_allowed_ones(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_key_types(["ec-p256", value])
    assert info.value.code == "invalid_request"
    for k in KeyType:
        assert k.value in info.value.message


def test_empty_key_type_list_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_key_types([])
    assert "at least one" in info.value.message


# ------------------------------------------------------------------ Serial.parse, OrderId, recorded forms
@pytest.mark.parametrize("value", [None, 7, 1.5, ["SN1"], {"serial": "SN1"}, b"SN1"])
def test_a_serial_that_is_not_a_string_is_refused_as_serial_invalid(value: object) -> None:
    with pytest.raises(Refusal) as info:
        Serial.parse(value)
    assert info.value.code == "serial_invalid"


def test_serial_parse_accepts_what_serial_accepts() -> None:
    assert Serial.parse("SN0000001") == Serial("SN0000001")


@pytest.mark.parametrize("value", ["po-1", "po-" + "a" * 60, "7"])
def test_order_id_is_a_slug(value: str) -> None:
    assert OrderId(value).value == value


@pytest.mark.parametrize("value", ["", "PO-1", "po 1", "-po", "p" * 64])
def test_order_id_outside_the_slug_form_is_invalid_order_id(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        OrderId(value)
    assert info.value.code == "invalid_order_id"


def test_refusal_events_record_any_string_that_fits_even_an_invalid_one() -> None:
    assert recorded_order_id("PO 1") == "PO 1"
    assert recorded_order_id("p" * 64) is None
    assert recorded_order_id(7) is None
    assert recorded_serial("SN 1") == "SN 1"
    assert recorded_serial("S" * 65) is None
    assert recorded_serial("SN\n1") is None
    assert recorded_serial(None) is None


# ------------------------------------------------------------------ ProductId, SiteId, FixtureId, CaName, OrderState
SLUG_VALUES = [(ProductId, "invalid_product_id"), (SiteId, "invalid_site_id"), (FixtureId, "invalid_fixture_id")]


@pytest.mark.parametrize(("cls", "code"), [*SLUG_VALUES, (CaName, "invalid_CA_name"), (OrderId, "invalid_order_id")])
@pytest.mark.parametrize("value", ["", "a" * 64, "CM-A", "-cm", "cm_a", "cm a", "caf\u00e9"])
def test_each_slug_value_refuses_with_the_code_and_message_of_the_slug_rule(
    cls: type[ProductId], code: str, value: str
) -> None:
    with pytest.raises(InvalidRequest) as got:
        cls(value)
    with pytest.raises(InvalidRequest) as rule:
        slug(value, cls.what)
    assert (got.value.code, got.value.status, got.value.message) == (code, 422, rule.value.message)


@pytest.mark.parametrize("cls", [ProductId, SiteId, FixtureId, CaName, OrderId])
def test_a_slug_value_holds_its_string_and_prints_as_it(cls: type[ProductId]) -> None:
    value = cls("cm-a2")
    assert value.value == "cm-a2" and str(value) == "cm-a2" and f"{value}" == "cm-a2"


def test_slug_values_of_different_kinds_are_never_equal() -> None:
    assert ProductId("x") != SiteId("x")
    assert ProductId("x") == ProductId("x") and hash(ProductId("x")) == hash(ProductId("x"))


@pytest.mark.parametrize(
    ("cls", "code", "message"),
    [
        (ProductId, "product_not_found", "no product 'Not A Slug'"),
        (SiteId, "site_not_found", "no site 'Not A Slug'"),
        (FixtureId, "fixture_not_found", "no fixture 'Not A Slug'"),
        (OrderId, "order_not_found", "no order 'Not A Slug'"),
    ],
)
def test_an_id_named_for_a_lookup_that_breaks_the_rule_is_not_found(
    cls: type[ProductId], code: str, message: str
) -> None:
    assert cls.named("cm-a") == cls("cm-a")
    with pytest.raises(NotFound) as info:
        cls.named("Not A Slug")
    assert (info.value.code, info.value.status, info.value.message) == (code, 404, message)


@pytest.mark.parametrize("value", ["active", "suspended", "closed"])
def test_order_state_parses_its_values(value: str) -> None:
    assert OrderState.parse(value) is OrderState(value)


@pytest.mark.parametrize("value", ["paused", "ACTIVE", ""])
def test_an_unknown_order_state_is_invalid_state_naming_the_known_ones(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        OrderState.parse(value)
    assert info.value.code == "invalid_state" and info.value.status == 422
    assert info.value.message == f"unknown order state {value!r}; one of active, suspended, closed"


def test_an_integer_too_long_for_str_is_a_serial_invalid_refusal_not_a_crash() -> None:
    with pytest.raises(Refusal) as refused:
        Serial(10**5000)  # type: ignore[arg-type]
    assert refused.value.code == "serial_invalid" and "digits" in refused.value.message
