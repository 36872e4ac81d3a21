"""EST (RFC 7030) under /.well-known/est: the same provisioning transaction, spoken by stock clients.

The optional label names the production order (``/.well-known/est/<order-id>/simpleenroll``). Without a
label, the fixture's site must have exactly one active order. Fixtures authenticate with their TLS
client certificate, as everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI, Request, Response
from sqlalchemy import select

from fabguard.api.tls import client_cert_der
from fabguard.domain.errors import InvalidRequest, NotFound, Refusal
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import OrderState
from fabguard.pki import est
from fabguard.pki.csr import load_csr
from fabguard.service import provisioning
from fabguard.service.instance import Instance
from fabguard.store.models import Order


def _cacerts(inst: Instance, label: str | None = None) -> Response:
    """The CA chain devices should trust: the issuing CA of the labelled order (default CA without a label) and root."""
    ca = "issuing"
    if label is not None:
        with inst.db.read() as s:
            order = s.get(Order, label)
        if order is None:
            raise NotFound(f"no order {label!r}", code="order_not_found")
        ca = order.issuing_ca
    return Response(
        est.certs_only([inst.cas.issuer(ca).certificate, inst.cas.certificate("root")]), media_type="application/pkcs7-mime"
    )


def _default_order(inst: Instance, fixture: FixtureFacts) -> str:
    with inst.db.read() as s:
        ids = list(
            s.execute(
                select(Order.id).where(Order.site_id == fixture.site_id, Order.state == OrderState.ACTIVE.value)
            ).scalars()
        )
    if len(ids) != 1:
        raise InvalidRequest(
            f"site {fixture.site_id} has {len(ids)} active orders: name one as the EST label "
            "(/.well-known/est/<order-id>/simpleenroll)",
            code="est_label_required",
            status=400,
        )
    return ids[0]


async def _enroll(inst: Instance, request: Request, fixture: FixtureFacts, label: str | None) -> Response:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    order_id = label if label is not None else await run_in_threadpool(_default_order, inst, fixture)

    def work() -> bytes:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        try:
            csr = load_csr(body, inst.limits.max_csr_bytes)
            serials = csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        except Refusal as refusal:
            provisioning.record_unit_refusal(inst, fixture, refusal, order_id=order_id, serial=None)
            raise
        except ValueError:
            unparsable = Refusal("csr_invalid", "the CSR subject cannot be parsed")
            provisioning.record_unit_refusal(inst, fixture, unparsable, order_id=order_id, serial=None)
            raise unparsable from None
        serial = serials[0].value if len(serials) == 1 else ""
        done = provisioning.provision_unit(inst, fixture, order_id=order_id, serial=serial, csr=body)
        return est.certs_only([x509.load_pem_x509_certificate(done.certificate_pem.encode())])

    return Response(await run_in_threadpool(work), media_type=est.CERTS_ONLY)


async def _reenroll(inst: Instance, request: Request) -> Response:
    from cryptography import x509
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    der = client_cert_der(request.scope)
    done = await run_in_threadpool(provisioning.reenroll_unit, inst, der, body)
    return Response(
        est.certs_only([x509.load_pem_x509_certificate(done.certificate_pem.encode())]), media_type=est.CERTS_ONLY
    )


def install_est(app: FastAPI, inst: Instance, fixture: Callable[..., FixtureFacts]) -> None:
    Fixture = Depends(fixture)

    @app.get("/.well-known/est/cacerts", tags=["est"])
    def cacerts() -> Response:
        """The CA certificates devices should trust (issuing CA and root), base64 PKCS#7 certs-only."""
        return _cacerts(inst)

    @app.get("/.well-known/est/{label}/cacerts", tags=["est"])
    def cacerts_labelled(label: str) -> Response:
        return _cacerts(inst, label)

    @app.get("/.well-known/est/csrattrs", tags=["est"])
    def csrattrs() -> Response:
        """What the CSR must carry: a P-256 key, ecdsa-with-SHA256, the unit serial as subject serialNumber."""
        return Response(est.csr_attributes(), media_type=est.CSRATTRS)

    @app.get("/.well-known/est/{label}/csrattrs", tags=["est"])
    def csrattrs_labelled(label: str) -> Response:
        return Response(est.csr_attributes(), media_type=est.CSRATTRS)

    @app.post("/.well-known/est/simplereenroll", tags=["est"])
    async def simplereenroll(request: Request) -> Response:
        """Renew a provisioned unit's certificate, authenticated by that certificate (TLS); consumes no quota."""
        return await _reenroll(inst, request)

    @app.post("/.well-known/est/{label}/simplereenroll", tags=["est"])
    async def simplereenroll_labelled(label: str, request: Request) -> Response:
        return await _reenroll(inst, request)

    @app.post("/.well-known/est/simpleenroll", tags=["est"])
    async def simpleenroll(request: Request, f: FixtureFacts = Fixture) -> Response:
        """Base64 DER PKCS#10 in (``application/pkcs10``), base64 PKCS#7 certs-only out: the provisioning transaction."""
        return await _enroll(inst, request, f, None)

    @app.post("/.well-known/est/{label}/simpleenroll", tags=["est"])
    async def simpleenroll_labelled(label: str, request: Request, f: FixtureFacts = Fixture) -> Response:
        return await _enroll(inst, request, f, label)


__all__ = ["install_est"]
