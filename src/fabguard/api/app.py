"""The FastAPI application: admin API (bearer tokens), fixture API (TLS client certificates)."""

# No "from __future__ import annotations": FastAPI must resolve the dependency aliases defined
# inside create_app at definition time.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fabguard import __version__
from fabguard.api.dashboard import install_dashboard
from fabguard.api.errors import BodyLimit, install_error_handlers
from fabguard.api.est import install_est
from fabguard.api.firmware import install_firmware
from fabguard.api.schemas import (
    CaCertificateIn,
    CaScopeIn,
    EnrollIn,
    FixtureIn,
    IssuingCaIn,
    MatterPaiIn,
    OrderIn,
    OrderStateIn,
    ProductIn,
    ProvisionBatchIn,
    ProvisionIn,
    QuotaChangeIn,
    RevokeIn,
    RevokeUnitIn,
    RotateIn,
    SiteIn,
    TestRecordsIn,
    TokenIn,
)
from fabguard.api.tls import client_cert_der
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import Role
from fabguard.runtime.workers import BackgroundWorkers
from fabguard.service import (
    authorities,
    catalog,
    events,
    fixtures,
    ledger,
    orders,
    provisioning,
    reports,
    revocation,
    testrecords,
    tokens,
)
from fabguard.service.instance import Instance

# Bounded integers: a value past 64 bits is a 422, never an overflow deep in the database driver.
Count = Annotated[int, Query(ge=0, le=2**62)]
ChangeId = Annotated[int, Path(ge=1, le=2**62)]

_bearer = HTTPBearer(auto_error=False, description="An API token: fgt_...")


def create_app(inst: Instance) -> Any:
    """Build the ASGI app for ``inst`` (the body-size limit wraps the FastAPI app)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        workers = BackgroundWorkers(inst).start()  # maintenance, projector, webhook sender
        try:
            yield
        finally:
            workers.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="FabGuard",
        version=__version__,
        description=(
            "Quota-bound, test-gated device certificate issuance for contract manufacturing. "
            "Admin calls use `Authorization: Bearer <token>`; fixture calls use the fixture's TLS "
            'client certificate. Errors are `{"error": {"code": ..., "message": ...}}`.'
        ),
    )
    app.state.instance = inst
    install_error_handlers(app)

    def principal(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> tokens.Principal:
        return tokens.authenticate_token(inst, creds.credentials if creds else None)

    def operator(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
        p.require(Role.ENGINEER)
        return p

    def admin(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
        p.require(Role.ADMIN)
        return p

    def approver(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
        p.require(Role.APPROVER)
        return p

    def reader(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
        p.require(Role.ENGINEER, Role.AUDITOR, Role.APPROVER)
        return p

    def fixture(request: Request) -> FixtureFacts:
        return fixtures.authenticate_fixture(inst, client_cert_der(request.scope), route=request.url.path)

    Operator = Annotated[tokens.Principal, Depends(operator)]
    Admin = Annotated[tokens.Principal, Depends(admin)]
    Approver = Annotated[tokens.Principal, Depends(approver)]
    Reader = Annotated[tokens.Principal, Depends(reader)]
    Fixture = Annotated[FixtureFacts, Depends(fixture)]

    @app.get("/api/v1/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/ca/certificates", tags=["meta"])
    def ca_certificates() -> dict[str, str]:
        """The public CA certificates (root, station CA and every issuing CA), PEM, by name."""
        return {c.name: inst.chain_pem(c.name)[0] for c in authorities.list_cas(inst) if c.subject}

    # Admin: tokens, catalogue, orders
    @app.post("/api/v1/tokens", status_code=201, tags=["admin"])
    def create_token(body: TokenIn, p: Admin) -> dict[str, Any]:
        made, secret = tokens.create_token(inst, name=body.name, role=body.role, actor=p.actor)
        return {"id": made.id, "name": made.name, "role": made.role.value, "token": secret}

    @app.post("/api/v1/products", status_code=201, tags=["admin"])
    def create_product(body: ProductIn, p: Admin) -> dict[str, Any]:
        prod = catalog.create_product(
            inst,
            product_id=body.id,
            name=body.name,
            key_types=body.key_types,
            cert_lifetime_days=body.cert_lifetime_days,
            actor=p.actor,
        )
        return _product(prod)

    @app.get("/api/v1/products", tags=["admin"])
    def list_products(_: Reader) -> list[dict[str, Any]]:
        return [_product(x) for x in catalog.list_products(inst)]

    @app.post("/api/v1/sites", status_code=201, tags=["admin"])
    def create_site(body: SiteIn, p: Admin) -> dict[str, Any]:
        site = catalog.create_site(inst, site_id=body.id, name=body.name, actor=p.actor)
        return {"id": site.id, "name": site.name}

    @app.get("/api/v1/sites", tags=["admin"])
    def list_sites(_: Reader) -> list[dict[str, Any]]:
        return [{"id": x.id, "name": x.name} for x in catalog.list_sites(inst)]

    @app.post("/api/v1/orders", status_code=201, tags=["orders"])
    def create_order(body: OrderIn, p: Operator) -> dict[str, object]:
        return orders.create_order(
            inst,
            order_id=body.id,
            product_id=body.product_id,
            site_id=body.site_id,
            quota=body.quota,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            actor=p.actor,
        ).to_dict()

    @app.get("/api/v1/orders", tags=["orders"])
    def list_orders(_: Reader) -> list[dict[str, object]]:
        return [o.to_dict() for o in orders.list_orders(inst)]

    @app.get("/api/v1/orders/{order_id}", tags=["orders"])
    def get_order(order_id: str, _: Reader) -> dict[str, object]:
        return orders.get_order(inst, order_id).to_dict()

    @app.get("/api/v1/orders/{order_id}/units", tags=["orders"])
    def order_units(order_id: str, _: Reader, after: Count = 0, limit: Count = 100) -> list[dict[str, object]]:
        return orders.order_units(inst, order_id, after_id=after, limit=min(max(limit, 1), inst.limits.max_page))

    @app.post("/api/v1/orders/{order_id}/state", tags=["orders"])
    def set_order_state(order_id: str, body: OrderStateIn, p: Operator) -> dict[str, object]:
        return orders.set_order_state(inst, order_id, body.state, actor=p.actor).to_dict()

    @app.post("/api/v1/orders/{order_id}/quota-changes", status_code=201, tags=["orders"])
    def request_quota_change(order_id: str, body: QuotaChangeIn, p: Operator) -> dict[str, object]:
        """Lowering applies at once; raising creates a pending change for a second approver."""
        return orders.request_quota_change(inst, order_id, body.quota, reason=body.reason, actor=p.actor)

    @app.post("/api/v1/quota-changes/{change_id}/approve", tags=["orders"])
    def approve_quota_change(change_id: ChangeId, p: Approver) -> dict[str, object]:
        return orders.decide_quota_change(inst, change_id, approve=True, actor=p.actor)

    @app.post("/api/v1/quota-changes/{change_id}/reject", tags=["orders"])
    def reject_quota_change(change_id: ChangeId, p: Approver) -> dict[str, object]:
        return orders.decide_quota_change(inst, change_id, approve=False, actor=p.actor)

    # Admin: fixtures
    @app.post("/api/v1/fixtures", status_code=201, tags=["fixtures"])
    def create_fixture(body: FixtureIn, p: Admin) -> dict[str, Any]:
        made, token = fixtures.create_fixture(inst, fixture_id=body.id, site_id=body.site_id, actor=p.actor)
        return {**fixtures.fixture_dict(made), "enrollment_token": token}

    @app.get("/api/v1/fixtures", tags=["fixtures"])
    def list_fixtures(_: Reader) -> list[dict[str, object]]:
        return [fixtures.fixture_dict(f) for f in fixtures.list_fixtures(inst)]

    @app.post("/api/v1/fixtures/{fixture_id}/revoke", tags=["fixtures"])
    def revoke_fixture(fixture_id: str, body: RevokeIn, p: Admin) -> dict[str, object]:
        return fixtures.fixture_dict(fixtures.revoke_fixture(inst, fixture_id, reason=body.reason, actor=p.actor))

    @app.post("/api/v1/fixtures/{fixture_id}/enrollment-token", status_code=201, tags=["fixtures"])
    def new_enrollment_token(fixture_id: str, p: Admin) -> dict[str, str]:
        return {
            "fixture_id": fixture_id,
            "enrollment_token": fixtures.new_enrollment_token(inst, fixture_id, actor=p.actor),
        }

    @app.get("/api/v1/events", tags=["audit"])
    def list_events(
        _: Reader, after: Count = 0, limit: Count = 100, kind: str | None = None, order_id: str | None = None
    ) -> list[dict[str, Any]]:
        return events.list_events(inst, after=after, limit=max(limit, 1), kind=kind, order_id=order_id)

    @app.get("/api/v1/units/{serial}/test-records", tags=["audit"])
    def unit_test_records(serial: str, _: Reader) -> list[dict[str, object]]:
        return testrecords.records_for_serial(inst, serial)

    # Ledger
    @app.get("/api/v1/ledger/checkpoint", tags=["ledger"])
    def ledger_checkpoint(_: Reader, format: str = "json") -> Any:
        """The newest signed checkpoint (signed now if the tree grew); ``format=note`` for the bare signed note."""
        cp = ledger.latest_checkpoint(inst)
        if format == "note":
            return PlainTextResponse(cp.note)
        return cp.to_dict()

    @app.get("/api/v1/ledger/checkpoints", tags=["ledger"])
    def ledger_checkpoints(_: Reader, limit: Count = 100) -> list[dict[str, Any]]:
        return [c.to_dict() for c in ledger.checkpoints(inst, limit=min(max(limit, 1), inst.limits.max_page))]

    @app.get("/api/v1/ledger/key", tags=["ledger"])
    def ledger_key(_: Reader) -> dict[str, str]:
        """The verifier key (C2SP signed-note form) that checks every checkpoint offline."""
        return {"verifier_key": ledger.public_verifier_key(inst)}

    @app.get("/api/v1/ledger/proof/inclusion", tags=["ledger"])
    def ledger_inclusion(
        _: Reader,
        index: Count | None = None,
        serial: str | None = None,
        cert: str | None = None,
        size: Count | None = None,
    ) -> dict[str, Any]:
        """Inclusion proof for one entry, named by index, unit serial, or certificate serial/SHA-256."""
        if index is None:
            index = ledger.index_of_unit(inst, serial=serial, cert=cert)
        return ledger.inclusion(inst, index, size)

    @app.get("/api/v1/ledger/proof/consistency", tags=["ledger"])
    def ledger_consistency(_: Reader, first: Count, second: Count | None = None) -> dict[str, Any]:
        return ledger.consistency(inst, first, second)

    @app.get("/api/v1/reports/reconciliation", tags=["ledger"])
    def reconciliation(
        _: Reader,
        order_id: str | None = None,
        site_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        format: str = "json",
    ) -> Any:
        """Ordered vs tested vs provisioned vs refused vs revoked at a fresh checkpoint; json, csv or pdf.

        JSON embeds its signature; CSV and PDF carry theirs in ``X-FabGuard-Signature`` (Ed25519 by the
        ledger key, base64)."""
        rep = reports.reconciliation_report(inst, order_id=order_id, site_id=site_id, since=since, until=until)
        if format == "json":
            return rep.to_dict()
        if format == "csv":
            data, media = reports.to_csv(rep).encode(), "text/csv"
        elif format == "pdf":
            data, media = reports.to_pdf(rep), "application/pdf"
        else:
            raise InvalidRequest("format must be json, csv or pdf", code="invalid_format")
        return Response(data, media_type=media, headers={"X-FabGuard-Signature": reports.sign_bytes(inst, data)})

    # Certificate authorities
    @app.get("/api/v1/cas", tags=["ca"])
    def list_cas(_: Reader) -> list[dict[str, object]]:
        return [c.to_dict() for c in authorities.list_cas(inst)]

    @app.post("/api/v1/cas", status_code=201, tags=["ca"])
    def create_issuing_ca(body: IssuingCaIn, p: Admin) -> dict[str, object]:
        """A new issuing CA for a site and/or product line, signed now by the online root."""
        return authorities.create_issuing_ca(
            inst, body.name, site_id=body.site_id, product_id=body.product_id, actor=p.actor
        ).to_dict()

    @app.post("/api/v1/cas/matter-pai", status_code=201, tags=["ca"])
    def create_matter_pai(body: MatterPaiIn, p: Admin) -> dict[str, object]:
        """A Matter PAI for one product: its orders get Matter DACs (under the vendor's PAA)."""
        return authorities.create_matter_pai(
            inst, body.name, product_id=body.product_id, vid=body.vid, pid=body.pid, actor=p.actor
        ).to_dict()

    @app.post("/api/v1/cas/{name}/csr", status_code=201, tags=["ca"])
    def issuing_ca_csr(name: str, body: CaScopeIn, p: Admin) -> dict[str, str]:
        """For an offline root: make the CA key here and return its CSR (PEM)."""
        csr = authorities.issuing_csr(inst, name, site_id=body.site_id, product_id=body.product_id, actor=p.actor)
        return {"name": name, "csr": csr}

    @app.post("/api/v1/cas/{name}/certificate", tags=["ca"])
    def import_ca_certificate(name: str, body: CaCertificateIn, p: Admin) -> dict[str, object]:
        return authorities.import_issuing_certificate(inst, name, body.certificate.encode(), actor=p.actor).to_dict()

    @app.post("/api/v1/cas/{name}/rotate", status_code=201, tags=["ca"])
    def rotate_ca(name: str, body: RotateIn, p: Admin) -> dict[str, object]:
        """New orders go to a fresh CA of the same scope; the old one is retired, its certificates stay valid."""
        return authorities.rotate_issuing_ca(inst, name, new_name=body.new_name, actor=p.actor).to_dict()

    @app.post("/api/v1/cas/{name}/revoke", tags=["ca"])
    def revoke_ca(name: str, body: RevokeUnitIn, p: Admin) -> dict[str, object]:
        """Put a CA on the root's CRL: it signs nothing more and its certificates stop verifying."""
        return authorities.revoke_ca(inst, name, reason_code=body.reason, note=body.note, actor=p.actor).to_dict()

    # Revocation
    @app.get("/crl/{ca}.crl", tags=["revocation"])
    def published_crl(ca: str) -> Response:
        """The CRL of ``root``, ``issuing`` or ``station`` (DER), as named in certificates' CRL Distribution Points."""
        return Response(revocation.current_crl(inst, ca), media_type="application/pkix-crl")

    @app.post("/api/v1/units/{serial}/revoke", tags=["revocation"])
    def revoke_unit(serial: str, body: RevokeUnitIn, p: Admin) -> dict[str, object]:
        """Revoke one unit's certificate; the issuing CA's CRL is re-signed at once."""
        return revocation.revoke_unit(
            inst, serial, reason_code=body.reason, note=body.note, actor=p.actor, product_id=body.product_id
        )

    @app.post("/api/v1/orders/{order_id}/revoke-units", tags=["revocation"])
    def revoke_order_units(order_id: str, body: RevokeUnitIn, p: Admin) -> dict[str, object]:
        """Revoke every unit provisioned on an order (a breached CM, a recalled batch)."""
        n = revocation.revoke_order_units(inst, order_id, reason_code=body.reason, note=body.note, actor=p.actor)
        return {"order_id": order_id, "revoked": n}

    # Fixture side
    @app.post("/api/v1/enroll", status_code=201, tags=["fixture"])
    def enroll(body: EnrollIn) -> dict[str, object]:
        """Exchange a one-time enrolment token and a CSR for the fixture's station certificate."""
        return fixtures.enroll_fixture(inst, token=body.token, csr_data=body.csr.encode()).to_dict()

    @app.get("/api/v1/fixture/whoami", tags=["fixture"])
    def whoami(f: Fixture) -> dict[str, str]:
        return {"fixture_id": f.id, "site_id": f.site_id}

    @app.post("/api/v1/test-records", status_code=201, tags=["fixture"])
    def upload_test_record(record: Annotated[dict[str, Any], Body()], f: Fixture) -> dict[str, object]:
        """One OpenHTF JSON test record (as written by OpenHTF's OutputToJSON)."""
        return testrecords.record_test(inst, f, record).to_dict()

    @app.post("/api/v1/test-records/batch", tags=["fixture"])
    def upload_test_records(body: TestRecordsIn, f: Fixture) -> dict[str, Any]:
        """Up to ``max_batch_records`` (200) records: each is checked on its own and answered in order
        (``stored`` with its id, or ``refused`` with the error); the stored ones and the refusals are
        written in one transaction, so a request that failed with an error status stored none of them."""
        return {"results": testrecords.record_tests(inst, f, body.records)}

    @app.post("/api/v1/units/provision", tags=["fixture"])
    def provision(body: ProvisionIn, f: Fixture, response: Response) -> dict[str, object]:
        """Check and, if allowed, issue one unit's device certificate (201; 200 for an idempotent retry)."""
        done = provisioning.provision_unit(inst, f, order_id=body.order_id, serial=body.serial, csr=body.csr)
        response.status_code = 200 if done.replayed else 201
        return done.to_dict()

    @app.post("/api/v1/units/provision-batch", tags=["fixture"])
    def provision_batch(body: ProvisionBatchIn, f: Fixture) -> dict[str, Any]:
        """Many units in one request; each is decided on its own and has its own status."""
        units = [u.model_dump() for u in body.units]
        return {"results": provisioning.provision_batch(inst, f, order_id=body.order_id, units=units)}

    install_est(app, inst, fixture)
    install_dashboard(app, inst, reader)
    install_firmware(app, inst, fixture, operator, approver, reader)
    return BodyLimit(app, inst.limits.max_body_bytes)


def _product(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "key_types": p.key_types.split(","),
        "cert_lifetime_days": p.cert_lifetime_days,
    }


__all__ = ["create_app"]
