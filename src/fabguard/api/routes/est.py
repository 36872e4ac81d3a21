"""EST (RFC 7030) under /.well-known/est: the same provisioning transaction, spoken by stock clients.

The optional label names the production order (``/.well-known/est/<order-id>/simpleenroll``). Without a
label, the fixture's site must have exactly one active order. Fixtures authenticate with their TLS
client certificate, as everywhere else.
"""

from __future__ import annotations

from cryptography import x509
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from fabguard.api import parsing
from fabguard.api.deps import Fixture, Inst, runner_of
from fabguard.api.media import answers, body
from fabguard.api.tls import client_cert_der
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.issuance import FixtureFacts
from fabguard.pki import est
from fabguard.service.catalog import orders
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import issuance, reenrolment

router = APIRouter(tags=["est"])
CACERTS = "application/pkcs7-mime"  # RFC 7030 4.1.3: no smime-type parameter
_CACERTS = answers("Base64 PKCS#7 certs-only", CACERTS)
_CERTS = answers("Base64 PKCS#7 certs-only", est.CERTS_ONLY)
_ATTRS = answers("Base64 DER CSR attributes", est.CSRATTRS)
_CSR = body("Base64 DER PKCS#10 (RFC 7030)", "application/pkcs10")


def _cacerts(inst: Instance, label: str | None = None) -> Response:
    """The CA chain devices should trust: the issuing CA of the labelled order (default CA without a label) and root."""
    ca = "issuing" if label is None else orders.issuing_ca_of(inst, label)
    return Response(est.certs_only([inst.cas.issuer(ca).certificate, inst.cas.certificate("root")]), media_type=CACERTS)


def _default_order(inst: Instance, fixture: FixtureFacts) -> str:
    ids = orders.active_order_ids(inst, fixture.site_id)
    if len(ids) != 1:
        raise InvalidRequest(
            f"site {fixture.site_id} has {len(ids)} active orders: name one as the EST label "
            "(/.well-known/est/<order-id>/simpleenroll)",
            code="est_label_required",
            status=400,
        )
    return ids[0]


async def _enroll(inst: Instance, request: Request, fixture: FixtureFacts, label: str | None) -> Response:
    body = await request.body()
    order_id = label if label is not None else await run_in_threadpool(_default_order, inst, fixture)

    def work() -> bytes:
        unit = parsing.est_unit_request(order_id, body, max_csr_bytes=inst.limits.max_csr_bytes)
        done = issuance.provision_unit(inst, fixture, unit, runner=runner_of(request))
        return est.certs_only([x509.load_pem_x509_certificate(done.certificate_pem.encode())])

    return Response(await run_in_threadpool(work), media_type=est.CERTS_ONLY)


async def _reenroll(inst: Instance, request: Request) -> Response:
    body = await request.body()
    der = client_cert_der(request.scope)
    done = await run_in_threadpool(reenrolment.reenroll_unit, inst, der, body)
    return Response(
        est.certs_only([x509.load_pem_x509_certificate(done.certificate_pem.encode())]), media_type=est.CERTS_ONLY
    )


@router.get("/.well-known/est/cacerts", **_CACERTS)
def est_cacerts(inst: Inst) -> Response:
    """The CA certificates devices should trust (issuing CA and root), base64 PKCS#7 certs-only."""
    return _cacerts(inst)


@router.get("/.well-known/est/{label}/cacerts", **_CACERTS)
def est_cacerts_labelled(inst: Inst, label: str) -> Response:
    return _cacerts(inst, label)


@router.get("/.well-known/est/csrattrs", **_ATTRS)
def est_csrattrs() -> Response:
    """What the CSR must carry: a P-256 key, ecdsa-with-SHA256, the unit serial as subject serialNumber."""
    return Response(est.csr_attributes(), media_type=est.CSRATTRS)


@router.get("/.well-known/est/{label}/csrattrs", **_ATTRS)
def est_csrattrs_labelled(label: str) -> Response:
    return Response(est.csr_attributes(), media_type=est.CSRATTRS)


@router.post("/.well-known/est/simplereenroll", **_CERTS, **_CSR)
async def est_simplereenroll(inst: Inst, request: Request) -> Response:
    """Renew a provisioned unit's certificate, authenticated by that certificate (TLS); consumes no quota."""
    return await _reenroll(inst, request)


@router.post("/.well-known/est/{label}/simplereenroll", **_CERTS, **_CSR)
async def est_simplereenroll_labelled(inst: Inst, label: str, request: Request) -> Response:
    return await _reenroll(inst, request)


@router.post("/.well-known/est/simpleenroll", **_CERTS, **_CSR)
async def est_simpleenroll(inst: Inst, request: Request, f: Fixture) -> Response:
    """Base64 DER PKCS#10 in (``application/pkcs10``), base64 PKCS#7 certs-only out: the provisioning transaction."""
    return await _enroll(inst, request, f, None)


@router.post("/.well-known/est/{label}/simpleenroll", **_CERTS, **_CSR)
async def est_simpleenroll_labelled(inst: Inst, label: str, request: Request, f: Fixture) -> Response:
    return await _enroll(inst, request, f, label)
