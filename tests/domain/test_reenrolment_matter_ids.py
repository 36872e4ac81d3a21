"""The re-enrolment policy that a unit's new DAC names its onboarding payload's vendor and product ID."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabguard.domain.errors import Refusal
from fabguard.domain.issuance import MatterPai
from fabguard.domain.reenrolment import REENROLMENT_POLICIES, authorize_reenrolment, dac_matches_onboarding
from fabguard.domain.values import KeyType
from tests.domain.test_issuance import allowed_renewal

UNDER_PAI = replace(allowed_renewal(), issuing_ca="pai-bulb", matter_pai=MatterPai(0x8000, 0xFFF1))


@pytest.mark.parametrize("onboarding", [None, (0xFFF1, 0x8000)])
def test_a_payload_naming_the_pais_ids_or_none_is_renewed(onboarding: tuple[int, int] | None) -> None:
    authorize_reenrolment(replace(UNDER_PAI, onboarding=onboarding))


def test_an_idevid_issuer_ignores_matter_data() -> None:
    dac_matches_onboarding(replace(allowed_renewal(), onboarding=(0xFFF2, 0x8001)))


@pytest.mark.parametrize("onboarding", [(0xFFF2, 0x8000), (0xFFF1, 0x8001)])
def test_a_payload_naming_other_ids_than_the_pai_is_refused(onboarding: tuple[int, int]) -> None:
    with pytest.raises(Refusal) as info:
        authorize_reenrolment(replace(UNDER_PAI, onboarding=onboarding))
    assert (info.value.code, info.value.status) == ("matter_ids_mismatch", 409)
    assert "pai-bulb" in info.value.message and UNDER_PAI.serial in info.value.message


def test_the_ids_are_checked_last_once_a_dac_is_possible() -> None:
    assert REENROLMENT_POLICIES[-1] is dac_matches_onboarding
    p384 = replace(
        UNDER_PAI,
        onboarding=(0xFFF2, 0x8000),
        allowed_key_types=(KeyType.EC_P256, KeyType.EC_P384),
        csr=replace(UNDER_PAI.csr, key_type=KeyType.EC_P384),
    )
    with pytest.raises(Refusal) as info:
        authorize_reenrolment(p384)
    assert info.value.code == "key_type_not_allowed"
