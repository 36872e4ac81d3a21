"""Issuing quota leases to offline site agents (the central side of issue 18).

A lease takes N units out of an order's quota in one transaction (so the central server and its agents
together never pass the order's quota), certifies the agent's own issuing key as a name-constrained,
pathLen 0 CA under the root (never handing out the root or any key), certifies the agent's TLS server key
under the station CA (the fixtures already trust it), and signs the whole bundle with the ledger key.
Issuing a lease makes a CA under the root, so it is under dual control: one person asks
(``lease_acts.LeaseIssue``), a second approves, and the lease is issued in the approval's transaction
(``issue_lease_in``, a ``lease.issued`` event naming both).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound
from fabguard.domain.identities.pools import leasable
from fabguard.domain.values import OrderId
from fabguard.ledger.lease import LEASE_FORMAT, sign_bundle
from fabguard.pki import profiles
from fabguard.service.agent.agent_request import AgentRequest
from fabguard.service.authority.authorities import is_matter_pai
from fabguard.service.core.ca_registry import EXTERNAL_KEY
from fabguard.service.core.instance import Instance
from fabguard.service.ledger.merkle_log import ledger_signing_key, public_verifier_key
from fabguard.store import identities as identity_rows
from fabguard.store.eventlog import append_event
from fabguard.store.models import CertificateAuthority, Fixture, Order, Product, Site
from fabguard.store.quota import reserve_units
from fabguard.store.quota_leases import QuotaLease

MAX_LEASE_DAYS = 90
_PEM = serialization.Encoding.PEM


def _fixture_entry(f: Fixture) -> dict[str, object]:
    return {
        "id": f.id,
        "site_id": f.site_id,
        "enrolled_at": f.enrolled_at.isoformat() if f.enrolled_at else None,
        "cert_fingerprint": f.cert_fingerprint,
        "cert_serial": f.cert_serial,
        "cert_not_after": f.cert_not_after.isoformat() if f.cert_not_after else None,
    }


def check_lease(
    inst: Instance, s: Session, order_id: OrderId, *, units: int, expires_in: timedelta, request: AgentRequest
) -> None:
    """Refuse a lease that could not be issued (asked for, and again when a second person approves)."""
    _terms(inst, s, order_id, units=units, expires_in=expires_in, request=request)
    order = s.get(Order, order_id.value)
    assert order is not None
    if order.quota - order.used < units:
        raise Conflict(
            f"order {order.id} has {order.quota - order.used} units left; a lease of {units} does not fit",
            code="lease_exceeds_quota",
        )
    _no_standing_discrepancy(s, order)


def _terms(
    inst: Instance, s: Session, order_id: OrderId, *, units: int, expires_in: timedelta, request: AgentRequest
) -> Order:
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise InvalidRequest("a lease grants a whole number of units, at least one", code="lease_units_invalid")
    if not timedelta(minutes=1) <= expires_in <= timedelta(days=MAX_LEASE_DAYS):
        raise InvalidRequest(f"a lease lasts from 1 minute to {MAX_LEASE_DAYS} days", code="invalid_time")
    now = inst.clock()
    order = s.get(Order, order_id.value)
    if order is None:
        raise NotFound(f"no order {order_id.value!r}", code="order_not_found")
    if order.site_id != request.site_id:
        raise InvalidRequest(
            f"the agent is at site {request.site_id}, order {order.id} at {order.site_id}",
            code="agent_request_invalid",
        )
    if order.valid_from > now:
        raise Conflict(
            f"order {order.id} is not valid before {order.valid_from.isoformat()}", code="order_not_yet_valid"
        )
    if order.valid_until is not None and order.valid_until <= now:
        raise Conflict(f"order {order.id} ended at {order.valid_until.isoformat()}", code="order_expired")
    ca_row = s.get(CertificateAuthority, order.issuing_ca)
    if (
        ca_row is None
        or ca_row.certificate_pem is None
        or is_matter_pai(x509.load_pem_x509_certificate(ca_row.certificate_pem.encode()))
    ):
        raise Conflict("only IDevID orders can be leased (a Matter DAC needs a PAI)", code="lease_order_unsupported")
    leasable(order.id, order.product_id, identity_rows.pool_row(s, order.product_id) is not None)
    return order


def _no_standing_discrepancy(s: Session, order: Order) -> None:
    standing = s.execute(
        select(QuotaLease.id).where(
            (QuotaLease.state == "discrepancy") | QuotaLease.discrepancy.is_not(None),  # a closed lease's too
            (QuotaLease.order_id == order.id) | (QuotaLease.site_id == order.site_id),
        )
    ).first()
    if standing is not None:
        raise Conflict(
            f"lease {standing[0]} of this order or site has a discrepancy that stands: resolve it first",
            code="lease_discrepancy",
        )


def issue_lease_in(
    inst: Instance,
    s: Session,
    order_id: OrderId,
    *,
    units: int,
    expires_in: timedelta,
    request: AgentRequest,
    actor: str,
    detail: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Reserve ``units`` of the order for one agent, certify its keys and return the signed lease bundle,
    in the caller's transaction: the act a second person approves (``lease_acts.py``), since
    it makes a CA under the root. ``detail`` joins the ``lease.issued`` event (which approval, who asked)."""
    now = inst.clock()
    order = _terms(inst, s, order_id, units=units, expires_in=expires_in, request=request)
    _no_standing_discrepancy(s, order)
    _reserve(s, order, units)
    lease_id = f"lease-{secrets.token_hex(6)}"
    ca_name = f"agent-{lease_id.removeprefix('lease-')}"
    agent_ca, server = _certify_agent(inst, order, request, lease_id, now)
    agent_ca_pem = agent_ca.public_bytes(_PEM).decode()
    agent_ca_sha256 = hashlib.sha256(agent_ca.public_bytes(serialization.Encoding.DER)).hexdigest()
    valid_until = order.valid_until
    not_after = now + expires_in if valid_until is None else min(now + expires_in, valid_until)  # never past the order
    terms = {
        "lease_id": lease_id,
        "order_id": order.id,
        "site_id": order.site_id,
        "product_id": order.product_id,
        "units": units,
        "issued_at": now.isoformat(),
        "not_after": not_after.isoformat(),
        "agent_ca_sha256": agent_ca_sha256,
        "agent_ledger_key": request.ledger_key,
        "issuer_key": public_verifier_key(inst),
    }
    certificates = {
        "root": inst.cas.certificate_pem("root"),
        "station": inst.cas.certificate_pem("station"),
        "agent_ca": agent_ca_pem,
        "server": server.public_bytes(_PEM).decode(),
    }
    body = _bundle_body(inst, s, order, terms, certificates) | {"publication": _publication(inst, ca_name)}
    bundle = sign_bundle(body, ledger_signing_key(inst))
    s.add(
        CertificateAuthority(
            name=ca_name,
            role="agent",
            state="active",
            site_id=order.site_id,
            product_id=order.product_id,
            key_ref=f"{EXTERNAL_KEY}{ca_name}",
            certificate_pem=agent_ca_pem,
            cert_serial=format(agent_ca.serial_number, "x"),
            created_at=now,
        )
    )
    s.add(
        QuotaLease(
            id=lease_id,
            order_id=order.id,
            site_id=order.site_id,
            units=units,
            issued_at=now,
            not_after=not_after,
            issued_by=actor,
            agent_ca=ca_name,
            agent_ca_sha256=agent_ca_sha256,
            agent_ledger_key=request.ledger_key,
            state="active",
            bundle=json.dumps(bundle),
            synced_size=0,
            units_synced=0,
        )
    )
    event_detail = {k: terms[k] for k in ("lease_id", "site_id", "units", "not_after")}
    event_detail |= {"agent_ca": ca_name, "agent_ca_sha256": agent_ca_sha256, "agent_ledger_key": request.ledger_key}
    append_event(s, "lease.issued", at=now, actor=actor, order_id=order.id, detail={**event_detail, **(detail or {})})
    return bundle


def status_key_name(agent_ca: str) -> str:
    """The key-store name of the key this server made to answer for ``agent_ca``'s units (ADR 0020)."""
    return f"{agent_ca}-status"


def _publication(inst: Instance, ca_name: str) -> dict[str, object]:
    """Where the agent's units are to name this server (its CRL, certificate and OCSP URLs for the agent CA),
    and the public key of the status signer the agent CA is to certify at ``agent init`` (ADR 0020): made here,
    kept in this server's key store, so the server answers for the agent's units after the agent is gone."""
    status_key = inst.keys.load(inst.keys.generate(status_key_name(ca_name))).public_key()
    return {
        "ca": ca_name,
        "crl_url": inst.cas.crl_url(ca_name),
        "ca_issuers_url": inst.cas.ca_issuers_url(ca_name),
        "ocsp_url": inst.cas.ocsp_url(ca_name),
        "status_key": status_key.public_bytes(_PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    }


def _reserve(s: Session, order: Order, units: int) -> None:
    """Take the lease's units out of the order's quota, or refuse with what is left."""
    if not reserve_units(s, order.id, units):
        current = s.get(Order, order.id)
        assert current is not None
        raise Conflict(
            f"order {order.id} is {current.state} with {current.quota - current.used} units left; "
            f"a lease of {units} does not fit",
            code="lease_exceeds_quota",
        )


def _certify_agent(
    inst: Instance, order: Order, request: AgentRequest, lease_id: str, now: datetime
) -> tuple[x509.Certificate, x509.Certificate]:
    """The agent's issuing CA certificate (under the root, for this order's product) and its TLS server
    certificate (under the station CA)."""
    org = inst.config.organization
    agent_ca = profiles.agent_issuing_ca(
        inst.cas.root_issuer(),
        _ec(request.ca_csr),
        org,
        f"{org} Site Agent CA {lease_id}",
        order.product_id,
        now,
        crl_url=inst.cas.crl_url("root"),
        ca_issuers_url=inst.cas.ca_issuers_url("root"),
        ocsp_url=inst.cas.ocsp_url("root"),
    )
    server = profiles.server_certificate(
        inst.cas.issuer("station"), _ec(request.server_csr), org, request.hostnames, now, days=MAX_LEASE_DAYS * 2
    )
    return agent_ca, server


def _bundle_body(
    inst: Instance, s: Session, order: Order, terms: dict[str, object], certificates: dict[str, str]
) -> dict[str, object]:
    """What the signed lease bundle says: its terms, the product and site, the site's enrolled fixtures, and
    the certificates the agent needs."""
    product, site = s.get(Product, order.product_id), s.get(Site, order.site_id)
    assert product is not None and site is not None
    fixtures = [
        _fixture_entry(f)
        for f in s.execute(
            select(Fixture).where(
                Fixture.site_id == order.site_id,
                Fixture.cert_fingerprint.is_not(None),
                Fixture.revoked_at.is_(None),
            )
        ).scalars()
    ]
    return {
        "format": LEASE_FORMAT,
        "lease": terms,
        "organization": inst.config.organization,
        "product": {
            "id": product.id,
            "name": product.name,
            "key_types": product.key_types.split(","),
            "cert_lifetime_days": product.cert_lifetime_days,
        },
        "site": {"id": site.id, "name": site.name},
        "fixtures": fixtures,
        "certificates": certificates,
    }


def lease_bundle(inst: Instance, lease_id: str) -> dict[str, object]:
    """The signed bundle of an issued lease (certificates and signed terms: no secret), for 'agent init'."""
    with inst.db.read() as s:
        row = s.get(QuotaLease, lease_id)
        if row is None:
            raise NotFound(f"no lease {lease_id!r}", code="lease_not_found")
        bundle: dict[str, object] = json.loads(row.bundle)
        return bundle


def _ec(csr: x509.CertificateSigningRequest) -> ec.EllipticCurvePublicKey:
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # AgentRequest.from_json checked it
    return key


def lease_dict(row: QuotaLease) -> dict[str, object]:
    return {
        "id": row.id,
        "order_id": row.order_id,
        "site_id": row.site_id,
        "units": row.units,
        "issued_at": row.issued_at.isoformat(),
        "not_after": row.not_after.isoformat(),
        "issued_by": row.issued_by,
        "agent_ca": row.agent_ca,
        "state": row.state,
        "synced_size": row.synced_size,
        "synced_at": row.synced_at.isoformat() if row.synced_at else None,
        "units_synced": row.units_synced,
        "discrepancy": row.discrepancy,
    }


def list_leases(inst: Instance, *, order_id: str | None = None) -> list[dict[str, object]]:
    q = select(QuotaLease).order_by(QuotaLease.issued_at, QuotaLease.id)
    if order_id:
        q = q.where(QuotaLease.order_id == order_id)
    with inst.db.read() as s:
        return [lease_dict(r) for r in s.execute(q).scalars()]


def get_lease(inst: Instance, lease_id: str) -> dict[str, object]:
    with inst.db.read() as s:
        row = s.get(QuotaLease, lease_id)
        if row is None:
            raise NotFound(f"no lease {lease_id!r}", code="lease_not_found")
        return lease_dict(row)
