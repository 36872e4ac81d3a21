"""Feature licences: engineers issue one to a provisioned unit; readers list a unit's licences."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.deps import Engineer, Inst, Reader
from fabguard.api.parsing import Timestamp
from fabguard.domain.values import ProductId, Serial
from fabguard.service.royalties import licences

router = APIRouter(tags=["licences"])


class LicenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[str] = Field(max_length=64, description="1-64 feature names (lower-case letters, digits, . _ -)")
    not_after: Timestamp | None = Field(default=None, description="Expiry, RFC 3339 with its offset; none by default")
    product_id: str | None = Field(
        default=None, max_length=63, description="Needed only if the serial is in several products"
    )


@router.post("/api/v1/units/{serial}/licences", status_code=201)
def issue(inst: Inst, serial: str, body: LicenceIn, p: Engineer) -> dict[str, Any]:
    """A signed licence bound to the unit's device certificate (a ledger event); 409 ``unit_revoked`` for a
    revoked unit. The document carries its signer's chain: the device verifies it with the root it trusts."""
    issued = licences.issue_licence(
        inst,
        Serial.parse(serial),
        features=body.features,
        actor=p.actor,
        not_after=body.not_after,
        product_id=ProductId.named(body.product_id) if body.product_id else None,
    )
    return issued.to_dict()


@router.get("/api/v1/units/{serial}/licences")
def list_licences(inst: Inst, serial: str, _: Reader) -> list[dict[str, Any]]:
    """The licences issued to a serial, oldest first, as their signed documents."""
    return licences.licences_of(inst, serial)
