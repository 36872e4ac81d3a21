"""Key attestation: a product's policy and trusted roots, and the check a provisioning request goes through.

The policy is read with the order (``store.issuance_facts.lock_order``); only a product whose policy is
not ``off`` reads its roots, in one more statement, and only when the request carries an attestation.
"""

from __future__ import annotations

import json
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound, Refusal
from fabguard.domain.issuance import ATTESTATION_OFF, AttestationFacts, AttestationPolicy
from fabguard.domain.values import ProductId
from fabguard.pki import attestation
from fabguard.pki.attestation.chain import MAX_CERT_PEM, certificate_sha256, readable
from fabguard.service.core.instance import Instance
from fabguard.store.attestation_models import AttestationRoot
from fabguard.store.eventlog import append_event
from fabguard.store.models import Product

MAX_ROOTS = 32  # per product and kind


def check_request(
    s: Session,
    policy: AttestationPolicy,
    product_id: str,
    evidence: attestation.Evidence | Refusal | None,
    csr: x509.CertificateSigningRequest,
    now: datetime,
) -> tuple[AttestationFacts, attestation.Attested | None]:
    """What the issuance policy needs to know about this request's attestation, and what to record."""
    if policy is AttestationPolicy.OFF:
        return ATTESTATION_OFF, None
    if evidence is None:
        return AttestationFacts(policy), None
    if isinstance(evidence, Refusal):
        return AttestationFacts(policy, failure=evidence), None
    pems = s.execute(
        select(AttestationRoot.certificate_pem).where(
            AttestationRoot.product_id == product_id, AttestationRoot.kind == attestation.kind_of(evidence)
        )
    ).scalars()
    roots = [x509.load_pem_x509_certificate(p.encode()) for p in pems]
    try:
        attested = attestation.verify(evidence, csr, roots, now)
    except Refusal as refusal:
        return AttestationFacts(policy, failure=refusal), None
    return AttestationFacts(policy, verified=True), attested


def recorded(attested: attestation.Attested | None) -> str | None:
    """The unit row's ``attestation`` column."""
    return None if attested is None else json.dumps(attested.to_dict(), sort_keys=True)


def _product(s: Session, product_id: ProductId) -> Product:
    product = s.get(Product, product_id.value, with_for_update=True)
    if product is None:
        raise NotFound(f"no product {product_id.value!r}", code="product_not_found")
    return product


def set_policy(inst: Instance, product_id: ProductId, policy: AttestationPolicy, *, actor: str) -> dict[str, object]:
    """Set a product's attestation policy (``required`` with no trusted root refuses every new unit)."""
    now = inst.clock()
    with inst.db.transaction() as s:
        product = _product(s, product_id)
        before = product.attestation_policy
        product.attestation_policy = policy.value
        append_event(
            s,
            "product.attestation_policy_set",
            at=now,
            actor=actor,
            detail={"product_id": product_id.value, "policy": policy.value, "before": before},
        )
    return settings(inst, product_id)


def add_root(inst: Instance, product_id: ProductId, kind: str, pem: str, *, actor: str) -> dict[str, str]:
    """Trust a TPM maker's (``tpm``) or SE vendor's (``se``) attestation CA certificate for a product."""
    if kind not in attestation.KINDS:
        raise InvalidRequest("the root's kind is tpm (AK certificates) or se (secure-element chains)")
    if len(pem) > MAX_CERT_PEM:
        raise InvalidRequest(
            f"a root certificate is at most {MAX_CERT_PEM} characters of PEM", code="certificate_invalid"
        )
    try:
        cert = readable(pem, "the root")
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidRequest("the certificate is not a CA (no basicConstraints)", code="certificate_not_ca") from None
    except Refusal:
        raise InvalidRequest("the root is not a readable PEM certificate", code="certificate_invalid") from None
    if not constraints.ca:
        raise InvalidRequest("the certificate is not a CA (basicConstraints cA is false)", code="certificate_not_ca")
    now, digest = inst.clock(), certificate_sha256(cert)
    row = {"kind": kind, "sha256": digest, "subject": cert.subject.rfc4514_string()[:500]}
    try:
        with inst.db.transaction() as s:
            _product(s, product_id)
            count = len(
                s.execute(
                    select(AttestationRoot.id).where(
                        AttestationRoot.product_id == product_id.value, AttestationRoot.kind == kind
                    )
                ).all()
            )
            if count >= MAX_ROOTS:
                raise InvalidRequest(f"a product trusts at most {MAX_ROOTS} roots of each kind")
            s.add(
                AttestationRoot(
                    product_id=product_id.value,
                    certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                    added_by=actor[:128],
                    added_at=now,
                    **row,
                )
            )
            s.flush()
            append_event(
                s, "product.attestation_root_added", at=now, actor=actor, detail={"product_id": product_id.value, **row}
            )
    except IntegrityError:
        raise Conflict(
            f"product {product_id.value} already trusts this {kind} root", code="attestation_root_exists"
        ) from None
    return row


def remove_root(inst: Instance, product_id: ProductId, sha256: str, *, actor: str) -> None:
    """Stop trusting a root: units issued under it keep their certificates; new ones need another root."""
    now = inst.clock()
    with inst.db.transaction() as s:
        _product(s, product_id)
        gone = s.execute(
            delete(AttestationRoot)
            .where(AttestationRoot.product_id == product_id.value, AttestationRoot.sha256 == sha256.lower())
            .returning(AttestationRoot.kind, AttestationRoot.subject)
        ).all()
        if not gone:
            raise NotFound(
                f"product {product_id.value} trusts no root {sha256[:64]!r}", code="attestation_root_not_found"
            )
        for kind, subject in gone:
            append_event(
                s,
                "product.attestation_root_removed",
                at=now,
                actor=actor,
                detail={"product_id": product_id.value, "kind": kind, "sha256": sha256.lower(), "subject": subject},
            )


def settings(inst: Instance, product_id: ProductId) -> dict[str, object]:
    """A product's policy and its trusted roots (without their PEM)."""
    with inst.db.read() as s:
        product = s.get(Product, product_id.value)
        if product is None:
            raise NotFound(f"no product {product_id.value!r}", code="product_not_found")
        rows = s.execute(
            select(AttestationRoot.kind, AttestationRoot.sha256, AttestationRoot.subject, AttestationRoot.added_at)
            .where(AttestationRoot.product_id == product_id.value)
            .order_by(AttestationRoot.id)
        ).all()
    return {
        "product_id": product_id.value,
        "policy": product.attestation_policy,
        "roots": [{"kind": k, "sha256": h, "subject": subj, "added_at": at.isoformat()} for k, h, subj, at in rows],
    }
