"""Certificate authorities (issuing CAs, Matter PAIs, offline-root CSRs, rotation, revocation) and the CRLs."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fabguard.api.deps import Admin, Inst, Reader
from fabguard.api.media import answers
from fabguard.api.schemas import CaCertificateIn, CaScopeIn, IssuingCaIn, MatterPaiIn, RevokeUnitIn, RotateIn
from fabguard.domain.values import CaName
from fabguard.service import authorities, revocation

router = APIRouter()


@router.get("/api/v1/cas", tags=["ca"])
def list_cas(inst: Inst, _: Reader) -> list[dict[str, object]]:
    return [c.to_dict() for c in authorities.list_cas(inst)]


@router.post("/api/v1/cas", status_code=201, tags=["ca"])
def create_issuing_ca(inst: Inst, body: IssuingCaIn, p: Admin) -> dict[str, object]:
    """A new issuing CA for a site and/or product line, signed now by the online root."""
    return authorities.create_issuing_ca(
        inst, CaName(body.name), site_id=body.site_id, product_id=body.product_id, actor=p.actor
    ).to_dict()


@router.post("/api/v1/cas/matter-pai", status_code=201, tags=["ca"])
def create_matter_pai(inst: Inst, body: MatterPaiIn, p: Admin) -> dict[str, object]:
    """A Matter PAI for one product: its orders get Matter DACs (under the vendor's PAA)."""
    return authorities.create_matter_pai(
        inst, CaName(body.name), product_id=body.product_id, vid=body.vid, pid=body.pid, actor=p.actor
    ).to_dict()


@router.post("/api/v1/cas/{name}/csr", status_code=201, tags=["ca"])
def issuing_ca_csr(inst: Inst, name: str, body: CaScopeIn, p: Admin) -> dict[str, str]:
    """For an offline root: make the CA key here and return its CSR (PEM)."""
    csr = authorities.issuing_csr(inst, CaName(name), site_id=body.site_id, product_id=body.product_id, actor=p.actor)
    return {"name": name, "csr": csr}


@router.post("/api/v1/cas/{name}/certificate", tags=["ca"])
def import_ca_certificate(inst: Inst, name: str, body: CaCertificateIn, p: Admin) -> dict[str, object]:
    return authorities.import_issuing_certificate(inst, name, body.certificate.encode(), actor=p.actor).to_dict()


@router.post("/api/v1/cas/{name}/rotate", status_code=201, tags=["ca"])
def rotate_ca(inst: Inst, name: str, body: RotateIn, p: Admin) -> dict[str, object]:
    """New orders go to a fresh CA of the same scope; the old one is retired, its certificates stay valid."""
    return authorities.rotate_issuing_ca(inst, name, new_name=body.new_name, actor=p.actor).to_dict()


@router.post("/api/v1/cas/{name}/revoke", tags=["ca"])
def revoke_ca(inst: Inst, name: str, body: RevokeUnitIn, p: Admin) -> dict[str, object]:
    """Put a CA on the root's CRL: it signs nothing more and its certificates stop verifying."""
    return authorities.revoke_ca(inst, name, reason_code=body.reason, note=body.note, actor=p.actor).to_dict()


@router.get("/crl/{ca}.crl", tags=["revocation"], **answers("The CA's current CRL (DER)", "application/pkix-crl"))
def published_crl(inst: Inst, ca: str) -> Response:
    """The CRL of ``root``, ``issuing`` or ``station`` (DER), as named in certificates' CRL Distribution Points."""
    return Response(revocation.current_crl(inst, ca), media_type="application/pkix-crl")
