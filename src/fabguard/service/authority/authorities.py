"""The CA hierarchy: a root (which may be offline), a station CA, and issuing CAs per site or product line.

Revoking one CM's issuing CA contains a breach at that CM; rotating an issuing CA moves new orders to
a fresh key while every certificate already issued keeps verifying. Every operation is a ledger entry.
Creating, importing, rotating and revoking are two people's (``ca_acts``): each ``check_*`` refuses a
request when it is made, each ``*_in`` carries it out in the approval's transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound
from fabguard.domain.issuance import CA_STATES_THAT_SIGN, MatterPai
from fabguard.domain.values import CaName
from fabguard.pki import matter, profiles
from fabguard.pki.crl import REASONS
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.models import CertificateAuthority, Product, Site

ROLES = ("root", "station", "issuing")
USABLE = CA_STATES_THAT_SIGN
# The CAs whose signature can stand behind a genuine unit: our issuing CAs, and the CA of a site agent,
# which issues under a quota lease (ADR 0010). Its signature alone proves nothing more than ours does: a
# unit is genuine only as the exact certificate recorded for it, and an agent's units are recorded only by
# a sync that verified against the lease, so what the agent CA signs off its log stays not issued.
DEVICE_ISSUER_ROLES = ("issuing", "agent")


def device_issuers(s: Session) -> list[CertificateAuthority]:
    """The CAs that may have issued genuine units (any state, with a certificate), by name: the one answer
    for field checks, exports, hand-offs and every other place that asks which CAs sign devices."""
    return list(
        s.execute(
            select(CertificateAuthority)
            .where(
                CertificateAuthority.role.in_(DEVICE_ISSUER_ROLES), CertificateAuthority.certificate_pem.is_not(None)
            )
            .order_by(CertificateAuthority.name)
        ).scalars()
    )


@dataclass(frozen=True)
class CaView:
    name: str
    role: str
    state: str
    site_id: str | None
    product_id: str | None
    key_ref: str
    subject: str | None
    not_after: datetime | None
    cert_serial: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "state": self.state,
            "site_id": self.site_id,
            "product_id": self.product_id,
            "key": self.key_ref.split(":", 1)[0],
            "subject": self.subject,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "cert_serial": self.cert_serial,
        }


def _view(row: CertificateAuthority) -> CaView:
    cert = x509.load_pem_x509_certificate(row.certificate_pem.encode()) if row.certificate_pem else None
    return CaView(
        row.name,
        row.role,
        row.state,
        row.site_id,
        row.product_id,
        row.key_ref,
        cert.subject.rfc4514_string() if cert else None,
        cert.not_valid_after_utc if cert else None,
        row.cert_serial,
    )


def list_cas(inst: Instance) -> list[CaView]:
    with inst.db.read() as s:
        return [_view(r) for r in s.execute(select(CertificateAuthority).order_by(CertificateAuthority.name)).scalars()]


def get_ca(inst: Instance, name: str) -> CaView:
    with inst.db.read() as s:
        row = s.get(CertificateAuthority, name)
        if row is None:
            raise NotFound(f"no CA {name!r}", code="ca_not_found")
        return _view(row)


def choose_issuing_ca(s: Session, product_id: str, site_id: str) -> str:
    """The active issuing CA for a new order: the most specific scope wins (site+product, site, product, default)."""
    rows = list(
        s.execute(
            select(CertificateAuthority).where(
                CertificateAuthority.role == "issuing", CertificateAuthority.state == "active"
            )
        ).scalars()
    )

    def rank(r: CertificateAuthority) -> int:
        if r.site_id not in (None, site_id) or r.product_id not in (None, product_id):
            return -1
        return (2 if r.site_id else 0) + (1 if r.product_id else 0)

    best = max(rows, key=lambda r: (rank(r), r.created_at), default=None)
    if best is None or rank(best) < 0:
        raise Conflict("no active issuing CA covers this site and product", code="no_issuing_ca")
    return best.name


def _check_scope(s: Session, site_id: str | None, product_id: str | None) -> None:
    if site_id is not None and s.get(Site, site_id) is None:
        raise NotFound(f"no site {site_id!r}", code="site_not_found")
    if product_id is not None and s.get(Product, product_id) is None:
        raise NotFound(f"no product {product_id!r}", code="product_not_found")


def check_new_ca(s: Session, name: str, *, site_id: str | None, product_id: str | None) -> None:
    """Refuse a new CA whose scope names nothing, or whose name is taken."""
    _check_scope(s, site_id, product_id)
    if s.get(CertificateAuthority, name) is not None:
        raise Conflict(f"CA {name} already exists", code="ca_exists")


def new_ca_key(inst: Instance, name: str) -> str:
    """A fresh key for the CA ``name``, under a key name of its own (``<name>-<8 hex digits>``, within the
    key stores' 64 characters). It is made in the transaction that registers the CA, so a transaction
    that fails leaves at most a key no CA refers to (never used to sign), and never blocks the next
    attempt with a key name already taken."""
    return inst.keys.generate(f"{name[:55]}-{secrets.token_hex(4)}")


def register_ca(
    s: Session,
    name: str,
    state: str,
    scope: tuple[str | None, str | None],
    key_ref: str,
    made: x509.Certificate | x509.CertificateSigningRequest,
    *,
    at: datetime,
    actor: str,
    kind: str,
    detail: Mapping[str, object],
    role: str = "issuing",
) -> CaView:
    cert = made if isinstance(made, x509.Certificate) else None
    csr = made if isinstance(made, x509.CertificateSigningRequest) else None
    site_id, product_id = scope
    row = CertificateAuthority(
        name=name,
        role=role,
        state=state,
        site_id=site_id,
        product_id=product_id,
        key_ref=key_ref,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode() if cert else None,
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode() if csr else None,
        cert_serial=format(cert.serial_number, "x") if cert else None,
        created_at=at,
    )
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"CA {name} already exists", code="ca_exists") from None
    append_event(
        s,
        kind,
        at=at,
        actor=actor,
        detail={
            "ca": name,
            "role": role,
            "site_id": site_id,
            "product_id": product_id,
            "state": state,
            "cert_serial": row.cert_serial,
            "key": key_ref.split(":", 1)[0],
            **detail,
        },
    )
    return _view(row)


def create_issuing_ca_in(
    s: Session,
    inst: Instance,
    name: str,
    *,
    site_id: str | None,
    product_id: str | None,
    at: datetime,
    actor: str,
    detail: Mapping[str, object],
) -> CaView:
    """In the caller's transaction (a second person's approval): a new issuing CA, its key made now and
    its certificate signed by the (online) root."""
    check_new_ca(s, name, site_id=site_id, product_id=product_id)
    key_ref = new_ca_key(inst, name)
    cn = f"{inst.config.organization} Issuing CA {name}"
    cert = profiles.intermediate_ca(
        inst.cas.issuer("root", s),
        inst.keys.load(key_ref).public_key(),
        inst.config.organization,
        cn,
        at,
        crl_url=inst.cas.crl_url("root"),
        ca_issuers_url=inst.cas.ca_issuers_url("root"),
        ocsp_url=inst.cas.ocsp_url("root"),
    )
    scope = (site_id, product_id)
    return register_ca(s, name, "active", scope, key_ref, cert, at=at, actor=actor, kind="ca.created", detail=detail)


def is_matter_pai(cert: x509.Certificate) -> bool:
    return matter.subject_ids(cert.subject)[0] is not None


def matter_pai_facts(certificate_pem: str | None) -> MatterPai | None:
    """What a device issuer's certificate says for the DAC policies: a Matter PAI, its product and vendor
    IDs, or None (an IDevID issuer). A subject whose VID or PID is malformed is left to the signer, which
    refuses it."""
    if not certificate_pem:
        return None
    try:
        vid, pid = matter.subject_ids(x509.load_pem_x509_certificate(certificate_pem.encode()).subject)
    except matter.AttestationProfileError:
        return None
    return None if vid is None else MatterPai(pid.value if pid is not None else None, vid.value)


def issuing_csr(inst: Instance, ca_name: CaName, *, site_id: str | None, product_id: str | None, actor: str) -> str:
    """For an offline root: make the key here and return a CSR for the root to sign (``ca import`` later).

    One person's: the CA it registers is ``pending``, with no certificate, so its key signs nothing
    until a certificate is imported, which takes a second person."""
    name = ca_name.value
    now = inst.clock()
    with inst.db.transaction() as s:
        check_new_ca(s, name, site_id=site_id, product_id=product_id)
        key_ref = new_ca_key(inst, name)
        key = inst.keys.load(key_ref)
        subject = x509.Name(
            [
                x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, inst.config.organization),
                x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{inst.config.organization} Issuing CA {name}"),
            ]
        )
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, profiles.hash_for(key))
        )
        scope = (site_id, product_id)
        register_ca(s, name, "pending", scope, key_ref, csr, at=now, actor=actor, kind="ca.csr_created", detail={})
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def check_import(s: Session, inst: Instance, name: str, cert_pem: bytes) -> CertificateAuthority:
    """The pending CA ``name``, if ``cert_pem`` is a CA certificate for its key signed by this root."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise InvalidRequest("the file is not a PEM certificate", code="certificate_invalid") from None
    row = s.get(CertificateAuthority, name, with_for_update=True)
    if row is None:
        raise NotFound(f"no CA {name!r}", code="ca_not_found")
    if row.state != "pending":
        raise Conflict(f"CA {name} is {row.state}, not waiting for a certificate", code="ca_not_pending")
    if cert.public_key() != inst.keys.load(row.key_ref).public_key():
        raise InvalidRequest("the certificate does not match this CA's key", code="certificate_key_mismatch")
    try:
        cert.verify_directly_issued_by(inst.cas.certificate("root"))
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidRequest(
            "the certificate is not signed by this instance's root CA", code="certificate_untrusted"
        ) from None
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise InvalidRequest("the certificate is not a CA certificate", code="certificate_not_ca")
    return row


def import_certificate_in(
    s: Session, inst: Instance, name: str, cert_pem: bytes, *, at: datetime, actor: str, detail: Mapping[str, object]
) -> CaView:
    """In the caller's transaction: install the certificate an offline root signed for a pending CA."""
    row = check_import(s, inst, name, cert_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    row.certificate_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    row.cert_serial = format(cert.serial_number, "x")
    row.state = "active"
    row.csr_pem = None
    append_event(s, "ca.imported", at=at, actor=actor, detail={"ca": name, "cert_serial": row.cert_serial, **detail})
    return _view(row)


def check_rotation(s: Session, name: str, *, new_name: str) -> CertificateAuthority:
    """The active issuing CA ``name``, if ``new_name`` is free for its successor."""
    row = s.get(CertificateAuthority, name, with_for_update=True)
    if row is None:
        raise NotFound(f"no CA {name!r}", code="ca_not_found")
    if row.role != "issuing" or row.state != "active":
        raise Conflict(
            f"only an active issuing CA can be rotated; {name} is {row.role}/{row.state}", code="ca_not_active"
        )
    check_new_ca(s, new_name, site_id=None, product_id=None)
    return row


def rotate_issuing_ca_in(
    s: Session,
    name: str,
    *,
    new_name: str,
    at: datetime,
    actor: str,
    detail: Mapping[str, object],
    successor: Callable[[CertificateAuthority], CaView],
) -> CaView:
    """In the caller's transaction: the old CA's ``successor`` (``matter_authorities.successor_in``: the same
    scope, and a Matter PAI's a PAI with its IDs) is made, and the old one retired (no new orders, its units
    stay valid)."""
    old = check_rotation(s, name, new_name=new_name)
    new = successor(old)
    old.state = "retired"
    append_event(s, "ca.rotated", at=at, actor=actor, detail={"ca": name, "successor": new_name, **detail})
    return new


def check_revocation(s: Session, name: str, *, reason_code: str) -> CertificateAuthority:
    """The CA ``name``, if it may be revoked for ``reason_code``: not the root, not revoked already."""
    if reason_code not in REASONS:
        raise InvalidRequest(f"unknown reason {reason_code!r}; one of {', '.join(REASONS)}", code="invalid_reason")
    row = s.get(CertificateAuthority, name, with_for_update=True)
    if row is None:
        raise NotFound(f"no CA {name!r}", code="ca_not_found")
    if row.role == "root":
        raise InvalidRequest("the root cannot revoke itself: replace the trust anchor instead", code="ca_is_root")
    if row.state == "revoked":
        raise Conflict(f"CA {name} is already revoked", code="ca_revoked")
    return row


def revoke_ca_in(
    s: Session, name: str, *, reason_code: str, note: str, at: datetime, actor: str, detail: Mapping[str, object]
) -> CaView:
    """In the caller's transaction: put an issuing (or the station) CA on the root's CRL: it signs nothing
    more, its certificates fail. The caller re-signs the root's CRL once committed (``refresh_crl``)."""
    row = check_revocation(s, name, reason_code=reason_code)
    row.state, row.revoked_at, row.revocation_reason = "revoked", at, reason_code
    append_event(
        s,
        "ca.revoked",
        at=at,
        actor=actor,
        detail={"ca": name, "reason": reason_code, "note": note, "cert_serial": row.cert_serial, **detail},
    )
    return _view(row)
