"""A Matter unit names one vendor and product everywhere: its onboarding payload (QR and manual codes,
drawn from the product's pool) and its DAC (whose VID and PID are its PAI's) must agree, or commissioning
fails (the commissioner checks the DAC's VID and PID against the device's Basic Information and the
Certification Declaration). docs/identities.md, "The pool's Matter IDs and the product's PAI".

One rule, four gates: a pool is not declared against the product's PAIs, a PAI is not made or imported
against the product's pool, an allocation draws no onboarding data the order's PAI would contradict
(``allocation.onboarding_fits_the_pai``), and, last, no DAC is signed whose VID or PID differs from the
onboarding payload drawn for the same unit (``domain/issuance.dac_matches_onboarding``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fabguard.domain.errors import Refusal
from fabguard.domain.identities.pools import MatterPool

CODE = "matter_ids_mismatch"


@dataclass(frozen=True, slots=True)
class PaiIds:
    """What a Matter PAI's subject fixes for the DACs it signs: the vendor ID, and the product ID if it
    names one (None: it fixes no product)."""

    vendor_id: int
    product_id: int | None = None


def ids_differ(pai: PaiIds, vendor_id: int, product_id: int) -> str | None:
    """How onboarding data for ``vendor_id``/``product_id`` differs from what the PAI fixes, or None."""
    if pai.vendor_id != vendor_id:
        return f"vendor ID {vendor_id:04X}, the PAI's is {pai.vendor_id:04X}"
    if pai.product_id is not None and pai.product_id != product_id:
        return f"product ID {product_id:04X}, the PAI's is {pai.product_id:04X}"
    return None


def pool_agrees_with_pais(product_id: str, matter: MatterPool | None, pais: Mapping[str, PaiIds]) -> None:
    """A product's Matter pool names the vendor (and the product, where a PAI fixes one) of every PAI that
    may sign its units' DACs (``pais``: by CA name). Declaring the pool, and making or importing a PAI,
    both ask it."""
    if matter is None:
        return
    for name, pai in sorted(pais.items()):
        if (why := ids_differ(pai, matter.vendor_id, matter.product_id)) is not None:
            raise Refusal(
                CODE,
                f"product {product_id}'s Matter pool gives onboarding codes for {why} (Matter PAI {name}): "
                "its units' DACs would name another product than their QR codes",
            )


def dac_agrees_with_onboarding(serial: str, ca_name: str, pai: PaiIds, onboarding: tuple[int, int] | None) -> None:
    """The last gate, at issuance: no DAC for a unit whose onboarding payload (``onboarding``: its vendor
    and product ID, allocated or about to be drawn; None where it has no Matter data) names another."""
    if onboarding is None:
        return
    if (why := ids_differ(pai, *onboarding)) is not None:
        raise Refusal(
            CODE,
            f"unit {serial}'s onboarding payload carries {why} (Matter PAI {ca_name}): "
            "a DAC for it would fail commissioning",
        )
