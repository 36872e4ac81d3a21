"""A product's identity pools (docs/identities.md): the OEM declares them, engineers keep them.

A declaration may be replaced until the pools have given one unit's identities out; from then on it stays
(another format or block could give a serial or an address twice). A MAC block overlapping another
product's is refused, and so is a Matter pool whose vendor (or product) ID is not the one the product's
Matter PAIs fix (``matter_ids_mismatch``: its units' DACs would name another product than their QR codes;
``domain/identities/matter_ids.py``). Each declaration is an event (``product.identities_set``) in the ledger.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fabguard.domain.errors import FabGuardError, InvalidRequest, NotFound
from fabguard.domain.identities.matter_ids import pool_agrees_with_pais
from fabguard.domain.identities.pools import IdentityPool, mac_block_apart, pool_json, pool_replaceable
from fabguard.domain.values import ProductId
from fabguard.pki.matter import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    SetupPasscode,
    Spake2pParameters,
    VendorId,
)
from fabguard.pki.matter import (
    ProductId as MatterProductId,
)
from fabguard.service.authority.matter_authorities import lock_product, product_pais
from fabguard.service.core.instance import Instance
from fabguard.store import identities as rows
from fabguard.store.eventlog import append_event
from fabguard.store.identity_models import IdentityPoolRow
from fabguard.store.models import Product


def _matter_fits(pool: IdentityPool) -> None:
    """The Matter settings make valid onboarding data (the specification's ranges, pki/matter)."""
    m = pool.matter
    if m is None:
        return
    try:
        OnboardingPayload(
            VendorId(m.vendor_id),
            MatterProductId(m.product_id),
            Discriminator(0),
            SetupPasscode(20202021),
            flow=CommissioningFlow(m.flow),
            discovery=DiscoveryCapability(m.discovery),
        )
        Spake2pParameters(b"\0" * 32, m.iterations)
    except FabGuardError as exc:
        raise InvalidRequest(f"the Matter settings: {exc.message}", code="invalid_identity_pool") from None
    except ValueError:
        raise InvalidRequest(
            f"the Matter commissioning flow {m.flow} is not 0, 1 or 2", code="invalid_identity_pool"
        ) from None


def _product(s: Session, product_id: ProductId, *, lock: bool = False) -> Product:
    product = lock_product(s, product_id.value) if lock else s.get(Product, product_id.value)
    if product is None:
        raise NotFound(f"no product {product_id}", code="product_not_found")
    return product


def set_pools(inst: Instance, product_id: ProductId, pool: IdentityPool, *, actor: str) -> dict[str, object]:
    """Declare (or, while nothing was given out, replace) the product's identity pools."""
    _matter_fits(pool)
    now = inst.clock()
    with inst.db.transaction() as s:
        _product(s, product_id, lock=True)  # a PAI made for it meanwhile waits (``matter_authorities``)
        row = rows.pool_row(s, product_id.value, lock=True)
        pool_replaceable(product_id.value, rows.given_out(s, product_id.value))
        mac_block_apart(product_id.value, pool.mac_range(), rows.mac_ranges(s))
        pool_agrees_with_pais(product_id.value, pool.matter, product_pais(s, product_id.value))
        columns = rows.pool_columns(pool)
        if row is None:
            row = IdentityPoolRow(
                product_id=product_id.value, next_serial=0, next_mac_unit=0, updated_at=now, **columns
            )
            s.add(row)
        else:
            for name, value in columns.items():
                setattr(row, name, value)
            row.next_serial, row.next_mac_unit, row.updated_at = 0, 0, now
        s.flush()
        declared = pool_json(pool)
        append_event(
            s, "product.identities_set", at=now, actor=actor, detail={"product_id": product_id.value, **declared}
        )
        return _settings(product_id.value, row, 0)


def pools(inst: Instance, product_id: ProductId) -> dict[str, object]:
    """The product's pools, with how much of each is given out."""
    with inst.db.read() as s:
        _product(s, product_id)
        row = rows.pool_row(s, product_id.value)
        if row is None:
            raise NotFound(f"product {product_id} declares no identity pool", code="identity_pool_not_found")
        return _settings(product_id.value, row, rows.given_out(s, product_id.value))


def _settings(product_id: str, row: IdentityPoolRow, given: int) -> dict[str, object]:
    return {
        "product_id": product_id,
        **pool_json(rows.pool_of(row)),
        "next_serial": row.next_serial,
        "next_mac_unit": row.next_mac_unit,
        "units_allocated": given,
    }
