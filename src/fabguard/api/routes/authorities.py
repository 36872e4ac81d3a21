"""Certificate authorities (issuing CAs, Matter PAIs, offline-root CSRs, rotation, revocation: each
under dual control but the CSR); the CRLs are published by ``publication``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fabguard.api.deps import Admin, Inst, Reader
from fabguard.api.responses.authority import Approval, Ca, CaCsr
from fabguard.api.schemas import CaCertificateIn, CaScopeIn, IssuingCaIn, MatterPaiIn, RevokeUnitIn, RotateIn
from fabguard.domain.values import CaName
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities
from fabguard.service.authority.ca_acts import CaCreation, CaImport, CaRevocation, CaRotation, MatterPaiCreation

router = APIRouter()


@router.get("/api/v1/cas", tags=["ca"], response_model=list[Ca])
def list_cas(inst: Inst, _: Reader) -> list[dict[str, object]]:
    return [c.to_dict() for c in authorities.list_cas(inst)]


# Creating, importing, rotating and revoking a CA are two people's: each answers 202 with the pending
# request, carried out when a second person approves it (POST /api/v1/approvals/{id}/approve).
PENDING: dict[int | str, dict[str, Any]] = {
    202: {"description": "The pending request; a second person approves it (docs/roles.md)"}
}


@router.post("/api/v1/cas", status_code=202, tags=["ca"], responses=PENDING, response_model=Approval)
def create_issuing_ca(inst: Inst, body: IssuingCaIn, p: Admin) -> dict[str, object]:
    """Ask for a new issuing CA for a site and/or product line: when a second person approves, its key
    is made and the online root signs it."""
    return requests.request(
        inst, CaName(body.name).value, CaCreation(body.site_id, body.product_id), by=requests.Person.of(p)
    ).to_dict()


@router.post("/api/v1/cas/matter-pai", status_code=202, tags=["ca"], responses=PENDING, response_model=Approval)
def create_matter_pai(inst: Inst, body: MatterPaiIn, p: Admin) -> dict[str, object]:
    """Ask for a Matter PAI for one product (its orders then get Matter DACs, under the vendor's PAA):
    made, with its key, when a second person approves. Its VID (and PID) must be the product's Matter
    pool's (`matter_ids_mismatch`, docs/identities.md)."""
    return requests.request(
        inst, CaName(body.name).value, MatterPaiCreation(body.product_id, body.vid, body.pid), by=requests.Person.of(p)
    ).to_dict()


@router.post("/api/v1/cas/{name}/csr", status_code=201, tags=["ca"], response_model=CaCsr)
def issuing_ca_csr(inst: Inst, name: str, body: CaScopeIn, p: Admin) -> dict[str, str]:
    """For an offline root: make the CA key here and return its CSR (PEM). The CA is pending and signs
    nothing until its certificate is imported, which needs a second person."""
    csr = authorities.issuing_csr(inst, CaName(name), site_id=body.site_id, product_id=body.product_id, actor=p.actor)
    return {"name": name, "csr": csr}


@router.post("/api/v1/cas/{name}/certificate", status_code=202, tags=["ca"], responses=PENDING, response_model=Approval)
def import_ca_certificate(inst: Inst, name: str, body: CaCertificateIn, p: Admin) -> dict[str, object]:
    """Ask for the certificate the offline root signed to be installed (checked now against the key and
    the root); the CA signs from the moment a second person approves."""
    return requests.request(
        inst, name, CaImport.from_pem(body.certificate.encode()), by=requests.Person.of(p)
    ).to_dict()


@router.post("/api/v1/cas/{name}/rotate", status_code=202, tags=["ca"], responses=PENDING, response_model=Approval)
def rotate_ca(inst: Inst, name: str, body: RotateIn, p: Admin) -> dict[str, object]:
    """Ask for new orders to go to a fresh CA of the same scope (a Matter PAI's successor is a PAI with its
    vendor and product IDs under the same PAA; refused with ``ca_key_offline`` where that PAA is offline);
    once approved the old one is retired, its certificates stay valid."""
    return requests.request(inst, name, CaRotation(CaName(body.new_name).value), by=requests.Person.of(p)).to_dict()


@router.post("/api/v1/cas/{name}/revoke", status_code=202, tags=["ca"], responses=PENDING, response_model=Approval)
def revoke_ca(inst: Inst, name: str, body: RevokeUnitIn, p: Admin) -> dict[str, object]:
    """Ask for a CA to be put on the root's CRL: once approved it signs nothing more and its
    certificates stop verifying."""
    return requests.request(inst, name, CaRevocation(body.reason, body.note), by=requests.Person.of(p)).to_dict()
