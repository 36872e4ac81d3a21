"""The pure rule that a Matter unit names one vendor and product: a pool against the product's PAIs, a DAC
against the unit's onboarding payload (domain/identities/matter_ids.py)."""

from __future__ import annotations

import pytest

from fabguard.domain.errors import Refusal
from fabguard.domain.identities.matter_ids import PaiIds, dac_agrees_with_onboarding, pool_agrees_with_pais
from fabguard.domain.identities.pools import MatterPool

POOL = MatterPool(0xFFF1, 0x8000)


def test_a_pool_agrees_with_pais_of_its_vendor_that_fix_its_product_or_none() -> None:
    pool_agrees_with_pais("bulb", POOL, {"a": PaiIds(0xFFF1, 0x8000), "b": PaiIds(0xFFF1, None)})
    pool_agrees_with_pais("bulb", POOL, {})  # no PAI: nothing to disagree with
    pool_agrees_with_pais("bulb", None, {"a": PaiIds(0xFFF2, 0x8001)})  # no Matter pool


@pytest.mark.parametrize(
    ("pai", "said"),
    [
        (PaiIds(0xFFF2, 0x8000), "vendor ID FFF1, the PAI's is FFF2"),
        (PaiIds(0xFFF2, None), "vendor ID FFF1, the PAI's is FFF2"),
        (PaiIds(0xFFF1, 0x8001), "product ID 8000, the PAI's is 8001"),
    ],
)
def test_a_pool_that_differs_from_any_pai_is_refused_naming_it(pai: PaiIds, said: str) -> None:
    with pytest.raises(Refusal) as refused:
        pool_agrees_with_pais("bulb", POOL, {"good": PaiIds(0xFFF1, 0x8000), "pai-2": pai})
    assert (refused.value.code, refused.value.status) == ("matter_ids_mismatch", 409)
    assert said in refused.value.message and "pai-2" in refused.value.message


def test_a_dac_is_refused_where_the_onboarding_payload_names_another_vendor_or_product() -> None:
    pai = PaiIds(0xFFF1, 0x8000)
    dac_agrees_with_onboarding("SN-1", "pai", pai, (0xFFF1, 0x8000))
    dac_agrees_with_onboarding("SN-1", "pai", pai, None)  # no Matter data: an onboarding payload made elsewhere
    for ids in ((0xFFF2, 0x8000), (0xFFF1, 0x8001)):
        with pytest.raises(Refusal) as refused:
            dac_agrees_with_onboarding("SN-1", "pai", pai, ids)
        assert refused.value.code == "matter_ids_mismatch" and "SN-1" in refused.value.message
