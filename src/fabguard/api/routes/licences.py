"""Feature licences: engineers issue one to a provisioned unit; readers list a unit's licences."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.deps import Admin, Engineer, Inst, Reader
from fabguard.api.parsing import Timestamp
from fabguard.api.responses.authority import Approval
from fabguard.api.responses.royalties import Licence, LicenceSigner
from fabguard.domain.values import ProductId, Serial
from fabguard.service.approvals import requests
from fabguard.service.royalties import licences
from fabguard.service.royalties.licence_acts import LicenceSignerRevocation

router = APIRouter(tags=["licences"])


class LicenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[str] = Field(max_length=64, description="1-64 feature names (lower-case letters, digits, . _ -)")
    not_after: Timestamp | None = Field(default=None, description="Expiry, RFC 3339 with its offset; none by default")
    product_id: str | None = Field(
        default=None, max_length=63, description="Needed only if the serial is in several products"
    )


class RevokeSignerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="key_compromise", description="RFC 5280 reason (key_compromise, superseded, ...)")
    note: str = Field(min_length=1, max_length=500, description="Why, in words (kept in the ledger)")


@router.post("/api/v1/units/{serial}/licences", status_code=201, response_model=Licence)
def issue_licence(inst: Inst, serial: str, body: LicenceIn, p: Engineer) -> dict[str, Any]:
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


@router.get("/api/v1/units/{serial}/licences", response_model=list[Licence])
def list_licences(inst: Inst, serial: str, _: Reader) -> list[dict[str, Any]]:
    """The licences issued to a serial, oldest first, as their signed documents."""
    return licences.licences_of(inst, serial)


@router.get("/api/v1/products/{product_id}/licence-signers", response_model=list[LicenceSigner])
def list_signers(inst: Inst, product_id: str, _: Reader) -> list[dict[str, Any]]:
    """The product's licence signers, oldest first: certificate, state (signing, retired, revoked, or pending:
    an offline root's signer waiting for its ceremony, no certificate yet). A device accepts a licence from any
    of them that chains to its root and is not on the root's CRL."""
    return licences.signers(inst, ProductId.named(product_id))


@router.post("/api/v1/products/{product_id}/licence-signers/rotate", status_code=201, response_model=LicenceSigner)
def rotate_signer(inst: Inst, product_id: str, p: Admin) -> dict[str, Any]:
    """A new licence signer signs from now on; the ones before it retire, and their licences stay valid."""
    licences.rotate_signer(inst, ProductId.named(product_id), actor=p.actor)
    return licences.signers(inst, ProductId.named(product_id))[-1]


@router.post(
    "/api/v1/products/{product_id}/licence-signers/{generation}/revoke",
    status_code=202,
    responses={202: {"description": "The pending request; a second person approves it (docs/roles.md)"}},
    response_model=Approval,
)
def revoke_signer(inst: Inst, product_id: str, generation: int, body: RevokeSignerIn, p: Admin) -> dict[str, object]:
    """Ask for a licence signer to go on the root's CRL (its licences stop verifying on devices that check
    it): carried out when a second person approves."""
    parameters = LicenceSignerRevocation(generation, body.reason, body.note)
    return requests.request(inst, ProductId.named(product_id).value, parameters, by=requests.Person.of(p)).to_dict()
