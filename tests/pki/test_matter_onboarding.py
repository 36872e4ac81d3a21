"""Matter onboarding data: passcode and discriminator rules, QR and manual codes, the SPAKE2+ verifier.

The codes are checked against esp-matter-mfg-tool on random inputs in test_matter_oracle.py; here, the
rules, the CHIP SDK's published test values, and what the randomness may and may not give.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import FabGuardError
from fabguard.pki.matter import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    ProductId,
    SetupPasscode,
    Spake2pParameters,
    UnitCommissioning,
    VendorId,
    onboarding,
    spake2p_verifier,
)
from fabguard.pki.matter.onboarding import INVALID_PASSCODES, base38_encode
from fabguard.pki.matter.spake2p import P256_ORDER

# The CHIP SDK's test device: CHIP_DEVICE_CONFIG_USE_TEST_SETUP_PIN_CODE, ..._DISCRIMINATOR, ..._SPAKE2P_*.
CHIP_PASSCODE, CHIP_DISCRIMINATOR = 20202021, 3840
CHIP_SALT, CHIP_ITERATIONS = b"SPAKE2P Key Salt", 1000
CHIP_VERIFIER = (
    "uWFwqugDNGiEck/po7KHwwMwwqZgN10XuyBajPGuyzUEV/iree4lOrao5GuwnlQ65CJzbeUB49s31EH+"
    "NEkg0JVI5MGCQGMMT/SRPFNRODm3wH/MBiehuFc6FJ/NH6Rmzw=="
)


def _code(call: object) -> str:
    with pytest.raises(FabGuardError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def _chip_payload(**changes: object) -> OnboardingPayload:
    fields: dict[str, object] = {
        "vendor_id": VendorId(0xFFF2),
        "product_id": ProductId(0x8001),
        "discriminator": Discriminator(CHIP_DISCRIMINATOR),
        "passcode": SetupPasscode(CHIP_PASSCODE),
    }
    return OnboardingPayload(**(fields | changes))  # type: ignore[arg-type]


def test_the_chip_test_device_gives_the_published_qr_and_manual_codes() -> None:
    payload = _chip_payload()
    assert payload.qr_code() == "MT:634J042C00KA0648G00"
    assert payload.manual_code() == "34970112332"
    assert payload.manual_code_grouped() == "3497-011-2332"


def test_the_chip_test_verifier_is_the_published_one() -> None:
    verifier = spake2p_verifier(SetupPasscode(CHIP_PASSCODE), Spake2pParameters(CHIP_SALT, CHIP_ITERATIONS))
    assert base64.b64encode(verifier).decode() == CHIP_VERIFIER


def test_the_verifier_is_w0_and_a_point_of_p256() -> None:
    verifier = spake2p_verifier(SetupPasscode(12121212), Spake2pParameters(b"s" * 32, 1000))
    assert len(verifier) == 97 and int.from_bytes(verifier[:32], "big") < P256_ORDER
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), verifier[32:])
    assert point.public_numbers().curve.name == "secp256r1"


def test_a_custom_flow_puts_vid_and_pid_in_a_21_digit_manual_code() -> None:
    payload = _chip_payload(flow=CommissioningFlow.CUSTOM)
    code = payload.manual_code()
    assert len(code) == 21 and code[0] == "7" and code[10:20] == "6552232769"  # 65522 = 0xFFF2, 32769 = 0x8001
    assert payload.manual_code_grouped().replace("-", "") == code


@pytest.mark.parametrize("passcode", [*sorted(INVALID_PASSCODES), 99999999 + 1, -5, 2**40])
def test_the_forbidden_and_out_of_range_passcodes_are_refused(passcode: int) -> None:
    assert _code(lambda: SetupPasscode(passcode)) == "invalid_setup_passcode"


def test_the_specifications_list_of_forbidden_passcodes_is_all_there() -> None:
    same_digit = {int(str(d) * 8) for d in range(10)}
    assert same_digit | {12345678, 87654321} == INVALID_PASSCODES
    assert _code(lambda: SetupPasscode(True)) == "invalid_setup_passcode"  # type: ignore[arg-type]


def test_a_random_passcode_skips_a_forbidden_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([11111111 - 1, 87654321 - 1, 20202021 - 1])
    monkeypatch.setattr(onboarding.secrets, "randbelow", lambda _: next(draws))
    assert SetupPasscode.random() == SetupPasscode(20202021)


def test_random_passcodes_and_discriminators_are_valid_and_vary() -> None:
    passcodes = {SetupPasscode.random().value for _ in range(2000)}
    assert len(passcodes) > 1990 and not passcodes & INVALID_PASSCODES
    assert all(1 <= p <= 99999998 for p in passcodes)
    discriminators = {Discriminator.random().value for _ in range(2000)}
    assert len(discriminators) > 1000 and all(0 <= d < 4096 for d in discriminators)


@pytest.mark.parametrize("value", [-1, 4096, True, "3840"])
def test_a_discriminator_is_12_bits(value: object) -> None:
    assert _code(lambda: Discriminator(value)) == "invalid_matter_onboarding"  # type: ignore[arg-type]


@pytest.mark.parametrize("discovery", [DiscoveryCapability(0), 1, 64, 2])
def test_discovery_capabilities_are_a_non_empty_sum_of_the_defined_bits(discovery: object) -> None:
    assert _code(lambda: _chip_payload(discovery=discovery)) == "invalid_matter_onboarding"


def test_a_commissioning_flow_outside_the_enum_is_refused() -> None:
    assert _code(lambda: _chip_payload(flow=3)) == "invalid_matter_onboarding"


@pytest.mark.parametrize(
    ("salt", "iterations"),
    [(b"x" * 15, 1000), (b"x" * 33, 1000), (b"x" * 16, 999), (b"x" * 16, 100001), ("x" * 16, 1000)],
)
def test_spake2p_parameters_keep_the_specifications_bounds(salt: bytes, iterations: int) -> None:
    assert _code(lambda: Spake2pParameters(salt, iterations)) == "invalid_matter_onboarding"


def test_base38_of_each_chunk_size() -> None:
    assert base38_encode(b"") == ""
    assert base38_encode(b"\x00") == "00"
    assert base38_encode(b"\xff") == "R6"  # 255 = 27 + 6 * 38, 27 is R
    assert base38_encode(b"\xff\xff") == "NE71"  # 65535 = 23 + 14*38 + 7*38**2 + 1*38**3
    assert len(base38_encode(b"\xff" * 3)) == 5 and len(base38_encode(b"\x01" * 11)) == 19


def test_a_unit_commissioning_is_fresh_and_consistent() -> None:
    a = UnitCommissioning.generate(VendorId(0xFFF1), ProductId(0x8000), iterations=1000)
    b = UnitCommissioning.generate(VendorId(0xFFF1), ProductId(0x8000), iterations=1000)
    assert a.parameters.salt != b.parameters.salt and len(a.parameters.salt) == 32
    assert a.verifier == spake2p_verifier(a.payload.passcode, a.parameters)
    assert a.qr_code.startswith("MT:") and len(a.manual_code) == 11
