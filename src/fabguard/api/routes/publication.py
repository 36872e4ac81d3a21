"""What relying parties fetch without credentials: CRLs, CA certificates and OCSP answers, at the URLs
certificates name.

Both the HTTPS app and the plain-HTTP publication listener (``fabguard serve --http-port``) serve these
routes; the plain-HTTP one serves nothing else (``api.publication``).
"""

from __future__ import annotations

import base64
import binascii
from email.utils import format_datetime

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from fabguard.api.deps import Inst
from fabguard.api.media import answers, body
from fabguard.service.authority import ocsp, revocation

router = APIRouter(tags=["revocation"])

OCSP_RESPONSE = "application/ocsp-response"
_OCSP_ANSWER = answers(
    "An OCSP response (DER, RFC 6960): successful, or malformedRequest (400) or unauthorized", OCSP_RESPONSE
)
# A request that does not parse is answered as OCSP says (a malformedRequest response), not as a JSON error.
_OCSP_ANSWER["responses"][400] = answers("malformedRequest (an OCSP response, DER)", OCSP_RESPONSE, status=400)[
    "responses"
][400]


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


@router.post("/ocsp", **_OCSP_ANSWER, **body("An OCSP request (DER)", "application/ocsp-request"))
async def answer_ocsp(inst: Inst, request: Request) -> Response:
    """The OCSP responder (RFC 6960 A.1.1), as named in certificates' Authority Information Access: the
    status of one certificate that the root, the station CA or an issuing CA issued, signed by that CA's
    delegated responder; a nonce in the request is echoed."""
    der = await request.body()
    return _ocsp(await run_in_threadpool(ocsp.respond, inst, der), cacheable=False)


@router.get("/ocsp/{ocsp_request:path}", **_OCSP_ANSWER)
def answer_ocsp_url(inst: Inst, ocsp_request: str) -> Response:
    """The OCSP responder by GET (RFC 6960 A.1.1, RFC 5019): the request's DER in base64 (URL-encoded) as the
    last part of the path. An answer without a nonce may be kept by HTTP caches until its nextUpdate."""
    try:
        der = base64.b64decode(ocsp_request.strip(), validate=True)
    except (binascii.Error, ValueError):
        der = b""  # answered malformedRequest
    return _ocsp(ocsp.respond(inst, der), cacheable=True)


def _ocsp(answer: ocsp.OcspAnswer, *, cacheable: bool) -> Response:
    response = Response(answer.der, status_code=answer.http_status, media_type=OCSP_RESPONSE)
    if cacheable and answer.max_age is not None:
        # RFC 5019 6.2: caches may keep a GET's answer until its nextUpdate.
        response.headers["cache-control"] = f"max-age={answer.max_age}, public, no-transform, must-revalidate"
        if answer.this_update is not None:
            response.headers["last-modified"] = format_datetime(answer.this_update, usegmt=True)
    else:
        response.headers["cache-control"] = "no-store"
    return response
