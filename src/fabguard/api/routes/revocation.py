"""Revoking units: one unit, or every unit of an order."""

from __future__ import annotations

from fastapi import APIRouter

from fabguard.api.deps import Admin, Inst
from fabguard.api.responses.authority import RevokedUnit, RevokedUnits
from fabguard.api.schemas import RevokeUnitIn
from fabguard.service.authority import revocation

router = APIRouter(tags=["revocation"])


@router.post("/api/v1/units/{serial}/revoke", response_model=RevokedUnit)
def revoke_unit(inst: Inst, serial: str, body: RevokeUnitIn, p: Admin) -> dict[str, object]:
    """Revoke one unit's certificate; the issuing CA's CRL is re-signed at once."""
    return revocation.revoke_unit(
        inst, serial, reason_code=body.reason, note=body.note, actor=p.actor, product_id=body.product_id
    )


@router.post("/api/v1/orders/{order_id}/revoke-units", response_model=RevokedUnits)
def revoke_order_units(inst: Inst, order_id: str, body: RevokeUnitIn, p: Admin) -> dict[str, object]:
    """Revoke every unit provisioned on an order (a breached CM, a recalled batch)."""
    n = revocation.revoke_order_units(inst, order_id, reason_code=body.reason, note=body.note, actor=p.actor)
    return {"order_id": order_id, "revoked": n}
