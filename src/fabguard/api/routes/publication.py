"""What relying parties fetch without credentials: CRLs and CA certificates, at the URLs certificates name.

Both the HTTPS app and the plain-HTTP publication listener (``fabguard serve --http-port``) serve these
routes; the plain-HTTP one serves nothing else (``api.publication``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from fabguard.api.deps import Inst
from fabguard.api.media import answers
from fabguard.service.authority import revocation

router = APIRouter(tags=["revocation"])


@router.get("/crl/{ca}.crl", **answers("The CA's current CRL (DER)", "application/pkix-crl"))
def published_crl(inst: Inst, ca: str) -> Response:
    """The CRL of ``root``, ``issuing``, ``station`` or another CA (DER), as named in certificates' CRL
    Distribution Points."""
    return Response(revocation.current_crl(inst, ca), media_type="application/pkix-crl")


@router.get("/ca/{ca}.crt", **answers("The CA's certificate (DER)", "application/pkix-cert"))
def published_ca_certificate(inst: Inst, ca: str) -> Response:
    """A CA's certificate (DER, RFC 5280 4.2.2.1), as named in the Authority Information Access (caIssuers)
    of the certificates it signs."""
    return Response(inst.cas.published_certificate(ca), media_type="application/pkix-cert")
