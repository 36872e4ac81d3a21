"""Health and the public CA certificates: no credentials needed."""

from __future__ import annotations

from fastapi import APIRouter

from fabguard import __version__
from fabguard.api.deps import Inst, Writer
from fabguard.service.authority import authorities

router = APIRouter(tags=["meta"])


@router.get("/api/v1/health")
def health(writer: Writer) -> dict[str, str]:
    """200 while this process can serve; 503 `provisioning_writer_down` once its provisioning writer has
    died (it then provisions nothing: restart it)."""
    writer.check()
    return {"status": "ok", "version": __version__}


@router.get("/api/v1/ca/certificates")
def ca_certificates(inst: Inst) -> dict[str, str]:
    """The public CA certificates (root, station CA and every issuing CA), PEM, by name."""
    return {c.name: inst.cas.certificate_pem(c.name) for c in authorities.list_cas(inst) if c.subject}
