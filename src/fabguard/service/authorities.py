"""The CA hierarchy: a root (which may be offline), a station CA, and issuing CAs per site or product line.

Revoking one CM's issuing CA contains a breach at that CM; rotating an issuing CA moves new orders to
a fresh key while every certificate already issued keeps verifying. Every operation is a ledger entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound, Refusal
from fabguard.domain.values import CaName
from fabguard.pki import matter, profiles
from fabguard.pki.crl import REASONS
from fabguard.service.instance import Instance
from fabguard.service.revocation import refresh_crl
from fabguard.store.db import append_event
from fabguard.store.models import CertificateAuthority, Product, Site

ROLES = ("root", "station", "issuing")
USABLE = ("active", "retired")


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


def create_issuing_ca(
    inst: Instance, ca_name: CaName, *, site_id: str | None, product_id: str | None, actor: str
) -> CaView:
    """A new issuing CA signed at once by the (online) root."""
    name = ca_name.value
    with inst.db.read() as s:
        _check_scope(s, site_id, product_id)
        if s.get(CertificateAuthority, name) is not None:
            raise Conflict(f"CA {name} already exists", code="ca_exists")
    key_ref = inst.keys.generate(name)
    public_key = inst.keys.load(key_ref).public_key()
    cn = f"{inst.config.organization} Issuing CA {name}"
    cert = profiles.intermediate_ca(
        inst.cas.root_issuer(), public_key, inst.config.organization, cn, inst.clock(), crl_url=inst.cas.crl_url("root")
    )
    return _register(inst, name, "active", site_id, product_id, key_ref, cert, None, actor, "ca.created")


def _register(
    inst: Instance,
    name: str,
    state: str,
    site_id: str | None,
    product_id: str | None,
    key_ref: str,
    cert: x509.Certificate | None,
    csr: x509.CertificateSigningRequest | None,
    actor: str,
    kind: str,
) -> CaView:
    now = inst.clock()
    row = CertificateAuthority(
        name=name,
        role="issuing",
        state=state,
        site_id=site_id,
        product_id=product_id,
        key_ref=key_ref,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode() if cert else None,
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode() if csr else None,
        cert_serial=format(cert.serial_number, "x") if cert else None,
        created_at=now,
    )
    try:
        with inst.db.transaction() as s:
            s.add(row)
            s.flush()
            append_event(
                s,
                kind,
                at=now,
                actor=actor,
                detail={
                    "ca": name,
                    "site_id": site_id,
                    "product_id": product_id,
                    "state": state,
                    "cert_serial": row.cert_serial,
                    "key": key_ref.split(":", 1)[0],
                },
            )
    except IntegrityError:
        raise Conflict(f"CA {name} already exists", code="ca_exists") from None
    return _view(row)


def create_matter_pai(
    inst: Instance, ca_name: CaName, *, product_id: str, vid: int, pid: int | None, actor: str
) -> CaView:
    """A Matter PAI for one product (orders of that product then get DACs), under this vendor's PAA.

    The PAA (a self-signed attestation root, separate from FabGuard's root) is made on first use and
    kept in the same key backend. DACs carry the PAI's vendor ID and the product ID.
    """
    name = ca_name.value
    vendor, product = matter.VendorId(vid), matter.ProductId(pid) if pid is not None else None
    with inst.db.read() as s:
        _check_scope(s, None, product_id)
        if s.get(CertificateAuthority, name) is not None:
            raise Conflict(f"CA {name} already exists", code="ca_exists")
    paa_name = f"matter-paa-{str(vendor).lower()}"
    now = inst.clock()
    with inst.db.read() as s:
        paa_row = s.get(CertificateAuthority, paa_name)
    if paa_row is None:
        key_ref = inst.keys.generate(paa_name)
        paa = matter.paa_certificate(
            inst.keys.load(key_ref), f"{inst.config.organization} Matter PAA {vendor}", now, vendor
        )
        row = CertificateAuthority(
            name=paa_name,
            role="paa",
            state="active",
            key_ref=key_ref,
            certificate_pem=paa.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            cert_serial=format(paa.certificate.serial_number, "x"),
            created_at=now,
        )
        with inst.db.transaction() as s:
            s.add(row)
            append_event(
                s, "ca.created", at=now, actor=actor, detail={"ca": paa_name, "role": "paa", "vid": str(vendor)}
            )
    paa_issuer = inst.cas.issuer(paa_name)
    key_ref = inst.keys.generate(name)
    cert = matter.pai_certificate(
        paa_issuer,
        inst.keys.load(key_ref).public_key(),
        f"{inst.config.organization} Matter PAI {name}",
        vendor,
        product,
        now,
    )
    return _register(inst, name, "active", None, product_id, key_ref, cert, None, actor, "ca.created")


def is_matter_pai(cert: x509.Certificate) -> bool:
    return matter.subject_ids(cert.subject)[0] is not None


def issuing_csr(inst: Instance, ca_name: CaName, *, site_id: str | None, product_id: str | None, actor: str) -> str:
    """For an offline root: make the key here and return a CSR for the root to sign (``ca import`` later)."""
    name = ca_name.value
    with inst.db.read() as s:
        _check_scope(s, site_id, product_id)
        if s.get(CertificateAuthority, name) is not None:
            raise Conflict(f"CA {name} already exists", code="ca_exists")
    key_ref = inst.keys.generate(name)
    key = inst.keys.load(key_ref)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, inst.config.organization),
                    x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{inst.config.organization} Issuing CA {name}"),
                ]
            )
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, profiles.hash_for(key))
    )
    _register(inst, name, "pending", site_id, product_id, key_ref, None, csr, actor, "ca.csr_created")
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def import_issuing_certificate(inst: Instance, name: str, cert_pem: bytes, *, actor: str) -> CaView:
    """Install the certificate an offline root signed for a pending CA, after checking it fits."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise InvalidRequest("the file is not a PEM certificate", code="certificate_invalid") from None
    now = inst.clock()
    with inst.db.transaction() as s:
        row = s.get(CertificateAuthority, name, with_for_update=True)
        if row is None:
            raise NotFound(f"no CA {name!r}", code="ca_not_found")
        if row.state != "pending":
            raise Conflict(f"CA {name} is {row.state}, not waiting for a certificate", code="ca_not_pending")
        if cert.public_key() != inst.keys.load(row.key_ref).public_key():
            raise InvalidRequest("the certificate does not match this CA's key", code="certificate_key_mismatch")
        root = inst.cas.certificate("root")
        try:
            cert.verify_directly_issued_by(root)
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
        row.certificate_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        row.cert_serial = format(cert.serial_number, "x")
        row.state = "active"
        row.csr_pem = None
        append_event(s, "ca.imported", at=now, actor=actor, detail={"ca": name, "cert_serial": row.cert_serial})
        return _view(row)


def rotate_issuing_ca(inst: Instance, name: str, *, new_name: str, actor: str) -> CaView:
    """A new issuing CA with the same scope; the old one is retired (no new orders, its units stay valid)."""
    old = get_ca(inst, name)
    if old.role != "issuing" or old.state != "active":
        raise Conflict(
            f"only an active issuing CA can be rotated; {name} is {old.role}/{old.state}", code="ca_not_active"
        )
    new = create_issuing_ca(inst, CaName(new_name), site_id=old.site_id, product_id=old.product_id, actor=actor)
    with inst.db.transaction() as s:
        row = s.get(CertificateAuthority, name, with_for_update=True)
        assert row is not None
        row.state = "retired"
        append_event(s, "ca.rotated", at=inst.clock(), actor=actor, detail={"ca": name, "successor": new_name})
    return new


def revoke_ca(inst: Instance, name: str, *, reason_code: str, note: str, actor: str) -> CaView:
    """Put an issuing (or the station) CA on the root's CRL: it signs nothing more, its certificates fail."""
    if reason_code not in REASONS:
        raise InvalidRequest(f"unknown reason {reason_code!r}; one of {', '.join(REASONS)}", code="invalid_reason")
    now = inst.clock()
    with inst.db.transaction() as s:
        row = s.get(CertificateAuthority, name, with_for_update=True)
        if row is None:
            raise NotFound(f"no CA {name!r}", code="ca_not_found")
        if row.role == "root":
            raise InvalidRequest("the root cannot revoke itself: replace the trust anchor instead", code="ca_is_root")
        if row.state == "revoked":
            raise Conflict(f"CA {name} is already revoked", code="ca_revoked")
        row.state, row.revoked_at, row.revocation_reason = "revoked", now, reason_code
        append_event(
            s,
            "ca.revoked",
            at=now,
            actor=actor,
            detail={"ca": name, "reason": reason_code, "note": note, "cert_serial": row.cert_serial},
        )
        view = _view(row)
    refresh_crl(inst, "root")
    return view


def usable_issuer(inst: Instance, name: str) -> profiles.Issuer:
    """The issuer for an order's CA, refusing one that is revoked or still pending."""
    ca = get_ca(inst, name)
    if ca.state not in USABLE:
        raise Refusal("issuing_ca_revoked", f"the order's issuing CA {name} is {ca.state}")
    return inst.cas.issuer(name)
