"""Products' licence signers under an offline root (docs/ceremony.md, "Licence signers").

A licence signer's certificate is the root's to sign (devices take a licence only from a signer the root
certified directly, ``fabguard_station.licence``). An online root signs it on the server
(``service.royalties.licences``); an offline root signs it at a ceremony: ``make_pending`` makes the
signer's key here and keeps its CSR (the signer is ``pending``: it signs nothing), the request bundle asks
for it (profile ``licence-signer``), and ``install`` puts the certificate the ceremony signed in place at
import (``licence.signer_created``, the product's earlier signers retired, as a rotation does).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Container
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import NotFound
from fabguard.domain.values import ProductId
from fabguard.pki import ceremony, ceremony_checks, profiles
from fabguard.pki.crl import RevokedEntry
from fabguard.pki.licence import licence_signer_subject
from fabguard.service.core.ca_registry import EXTERNAL_KEY
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.licence_models import LicenceSigner
from fabguard.store.models import CertificateAuthority, Product

NAME_PREFIX = "licence-signer."  # a dot, which no CA name (a slug) holds: the two never collide in a bundle


def root_is_offline(s: Session) -> bool:
    """Whether this instance's root key is at a ceremony (``init --offline-root``), not here."""
    row = s.get(CertificateAuthority, "root")
    return row is not None and row.key_ref.startswith(EXTERNAL_KEY)


def bundle_name(row: LicenceSigner) -> str:
    return f"{NAME_PREFIX}{row.product_id}.{row.generation}"


def _pending(s: Session) -> list[LicenceSigner]:
    q = (
        select(LicenceSigner)
        .where(LicenceSigner.certificate_pem.is_(None))
        .order_by(LicenceSigner.product_id, LicenceSigner.generation)
    )
    return list(s.execute(q).scalars())


def pending_of(s: Session, product_id: str) -> LicenceSigner | None:
    return next((r for r in _pending(s) if r.product_id == product_id), None)


def make_pending(inst: Instance, product_id: ProductId, *, actor: str) -> LicenceSigner:
    """The product's next signer, pending: its key made here, its CSR kept for the ceremony
    (``licence.signer_requested``). A product waits for one signer at a time: asked again, the same one."""
    pid = product_id.value
    with inst.db.read() as s:
        if s.get(Product, pid) is None:
            raise NotFound(f"no product {pid!r}", code="product_not_found")
        waiting = pending_of(s, pid)
    if waiting is not None:
        return waiting
    now = inst.clock()
    key_name = f"licence-{pid}-{secrets.token_hex(4)}"
    key_ref = inst.keys.generate(key_name)
    key = inst.keys.load(key_ref)
    subject = licence_signer_subject(inst.config.organization, pid)
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, profiles.hash_for(key))
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    try:
        with inst.db.transaction() as s:
            q = select(func.max(LicenceSigner.generation)).where(LicenceSigner.product_id == pid)
            generation = int(s.execute(q).scalar_one() or 0) + 1
            row = LicenceSigner(product_id=pid, generation=generation, key_ref=key_ref, csr_pem=csr_pem, created_at=now)
            s.add(row)
            s.flush()
            detail = {"product_id": pid, "generation": generation, "key_ref": key_ref, "ceremony": True}
            append_event(s, "licence.signer_requested", at=now, actor=actor, detail=detail)
    except IntegrityError:  # a rival asked for the product's next signer at the same moment: that one waits
        if key_ref.startswith("file:"):
            inst.keys.path(key_name).unlink(missing_ok=True)
        with inst.db.read() as s:
            found = pending_of(s, pid)
        if found is None:
            raise
        return found
    return row


def signing_requests(s: Session, organization: str) -> list[ceremony.SigningRequest]:
    """What the root's ceremony is asked to sign for the pending licence signers."""
    out = []
    for row in _pending(s):
        csr = _csr(row)
        out.append(
            ceremony.SigningRequest(
                bundle_name(row),
                ceremony.LICENCE_SIGNER,
                organization,
                f"{row.product_id} licences",
                csr,
                product_id=row.product_id,
            )
        )
    return out


def expected(
    inst: Instance, s: Session, names: Container[str]
) -> dict[str, tuple[LicenceSigner, ceremony_checks.Expected]]:
    """The pending signers a signed bundle holds certificates for (by their names in it), and what each must be."""
    found = {}
    for row in _pending(s):
        name = bundle_name(row)
        if name in names:
            subject = _csr(row).subject
            want = ceremony_checks.Expected(inst.keys.load(row.key_ref).public_key(), subject, ceremony.LICENCE_SIGNER)
            found[name] = (row, want)
    return found


def _csr(row: LicenceSigner) -> x509.CertificateSigningRequest:
    if row.csr_pem is None:  # the table's check: a row with no certificate has its CSR
        raise ValueError(f"licence signer {row.generation} of {row.product_id} has neither certificate nor CSR")
    return x509.load_pem_x509_csr(row.csr_pem.encode())


def install(s: Session, row: LicenceSigner, cert: x509.Certificate, *, now: datetime, actor: str) -> None:
    """The checked certificate in place: the signer signs from now on, the product's earlier ones retire."""
    for old in s.execute(
        select(LicenceSigner).where(
            LicenceSigner.product_id == row.product_id,
            LicenceSigner.generation < row.generation,
            LicenceSigner.retired_at.is_(None),
        )
    ).scalars():
        old.retired_at = now
    der = cert.public_bytes(serialization.Encoding.DER)
    row.certificate_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    detail = {
        "product_id": row.product_id,
        "generation": row.generation,
        "key_ref": row.key_ref,
        "certificate_sha256": hashlib.sha256(der).hexdigest(),
        "certificate_serial": format(cert.serial_number, "x"),
        "ceremony": True,
    }
    append_event(s, "licence.signer_created", at=now, actor=actor, detail=detail)


def revoked_under(s: Session, root_subject: x509.Name) -> list[RevokedEntry]:
    """The revoked licence signers the root certified: its CRL lists them."""
    entries = []
    for signer in s.execute(select(LicenceSigner).where(LicenceSigner.revoked_at.is_not(None))).scalars():
        if signer.certificate_pem is None or signer.revoked_at is None:  # pending: it has no certificate
            continue
        cert = x509.load_pem_x509_certificate(signer.certificate_pem.encode())
        if cert.issuer == root_subject:
            entries.append(
                RevokedEntry(cert.serial_number, signer.revoked_at, signer.revocation_reason or "unspecified")
            )
    return entries


__all__ = [
    "bundle_name",
    "expected",
    "install",
    "make_pending",
    "pending_of",
    "revoked_under",
    "root_is_offline",
    "signing_requests",
]
