"""Matter attestation CAs: a PAI per product under the vendor's PAA (made on first use).

Creating a PAI is two people's, like any CA (``ca_acts``): ``check_matter_pai`` refuses a request when it
is made, ``create_matter_pai_in`` carries it out in the approval's transaction. A PAI whose VID (or PID)
differs from the product's Matter pool is refused, made or imported (``matter_ids_mismatch``,
``domain/identities/matter_ids.py``): its DACs would name another product than the units' QR codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict
from fabguard.domain.identities.matter_ids import PaiIds, pool_agrees_with_pais
from fabguard.pki import matter
from fabguard.service.authority import authorities
from fabguard.service.core.ca_registry import EXTERNAL_KEY, OFFLINE_ROOT_KEY
from fabguard.service.core.instance import Instance
from fabguard.store import identities
from fabguard.store.models import CertificateAuthority, Product


def paa_name(vendor: matter.VendorId) -> str:
    """The registry name of the vendor's PAA."""
    return f"matter-paa-{str(vendor).lower()}"


def check_matter_pai(
    s: Session, name: str, *, product_id: str, vid: int, pid: int | None, offline: bool = False
) -> tuple[matter.VendorId, matter.ProductId | None]:
    """Refuse a PAI whose product is unknown, whose name is taken or whose IDs are not Matter's; made here
    (not ``offline``, at a ceremony), refuse it too where the PAA's key is offline, or would be made online
    on an instance whose root is offline (its PAA is made at a ceremony: docs/ceremony.md)."""
    ids = matter.VendorId(vid), matter.ProductId(pid) if pid is not None else None
    authorities.check_new_ca(s, name, site_id=None, product_id=product_id)
    pai_agrees_with_pool(s, product_id, name, PaiIds(vid, pid))
    paa, root = s.get(CertificateAuthority, paa_name(ids[0])), s.get(CertificateAuthority, "root")
    offline_paa = paa is not None and paa.key_ref.startswith(EXTERNAL_KEY)
    if not offline and (offline_paa or (paa is None and root is not None and root.key_ref == OFFLINE_ROOT_KEY)):
        raise Conflict(
            f"the root of this instance (and so its Matter PAA {paa_name(ids[0])}) is offline: ask for the PAI "
            "at a ceremony ('fabguard ceremony add-matter-pai', docs/ceremony.md)",
            code="ca_key_offline",
        )
    return ids


def create_matter_pai_in(
    s: Session,
    inst: Instance,
    name: str,
    *,
    product_id: str,
    vid: int,
    pid: int | None,
    at: datetime,
    actor: str,
    detail: Mapping[str, object],
) -> authorities.CaView:
    """In the caller's transaction: a Matter PAI for one product (orders of that product then get DACs),
    under this vendor's PAA.

    The PAA (a self-signed attestation root, separate from FabGuard's root) is made on first use and
    kept in the same key backend. DACs carry the PAI's vendor ID and the product ID.
    """
    vendor, product = check_matter_pai(s, name, product_id=product_id, vid=vid, pid=pid)
    paa_ca = paa_name(vendor)
    if s.get(CertificateAuthority, paa_ca) is None:
        paa_key = authorities.new_ca_key(inst, paa_ca)
        paa = matter.paa_certificate(
            inst.keys.load(paa_key), f"{inst.config.organization} Matter PAA {vendor}", at, vendor
        )
        paa_detail = {**detail, "vid": str(vendor)}
        authorities.register_ca(
            s, paa_ca, "active", (None, None), paa_key, paa.certificate,
            at=at, actor=actor, kind="ca.created", detail=paa_detail, role="paa",
        )  # fmt: skip
    key_ref = authorities.new_ca_key(inst, name)
    cert = matter.pai_certificate(
        inst.cas.issuer(paa_ca, s),
        inst.keys.load(key_ref).public_key(),
        f"{inst.config.organization} Matter PAI {name}",
        vendor,
        product,
        at,
    )
    scope = (None, product_id)
    return authorities.register_ca(
        s, name, "active", scope, key_ref, cert, at=at, actor=actor, kind="ca.created", detail=detail
    )


def pai_ids(row: CertificateAuthority) -> PaiIds | None:
    """What a CA's certificate (or, while pending, its CSR) fixes for the DACs it signs: a Matter PAI's
    vendor and product ID; None for an IDevID issuer (or a subject the signer would refuse anyway)."""
    if row.certificate_pem:
        subject = x509.load_pem_x509_certificate(row.certificate_pem.encode()).subject
    elif row.csr_pem:
        subject = x509.load_pem_x509_csr(row.csr_pem.encode()).subject
    else:
        return None
    try:
        vid, pid = matter.subject_ids(subject)
    except matter.AttestationProfileError:
        return None
    return None if vid is None else PaiIds(vid.value, pid.value if pid is not None else None)


def product_pais(s: Session, product_id: str) -> dict[str, PaiIds]:
    """The product's Matter PAIs that sign or will sign its units' DACs (pending, active or retired; not
    revoked), by name, with what each fixes."""
    rows = s.execute(
        select(CertificateAuthority).where(
            CertificateAuthority.product_id == product_id,
            CertificateAuthority.role == "issuing",
            CertificateAuthority.state != "revoked",
        )
    ).scalars()
    return {row.name: ids for row in rows if (ids := pai_ids(row)) is not None}


def lock_product(s: Session, product_id: str) -> Product | None:
    """The product's row, locked: declaring its pool and making or importing its PAIs wait for each other,
    so neither can pass its check against the other's state before the other commits."""
    return s.get(Product, product_id, with_for_update=True)


def pai_agrees_with_pool(s: Session, product_id: str, name: str, ids: PaiIds) -> None:
    """A PAI ``name`` for the product fixes the vendor (and product) its Matter pool gives codes for."""
    lock_product(s, product_id)
    row = identities.pool_row(s, product_id)
    pool_agrees_with_pais(product_id, identities.pool_of(row).matter if row is not None else None, {name: ids})


def imported_pai_agrees(s: Session, name: str, certificate: x509.Certificate) -> None:
    """A certificate imported for the product-scoped CA ``name``: if it is a Matter PAI, it agrees with the
    product's pool (a CA the registry does not hold is left to the import's own checks)."""
    row = s.get(CertificateAuthority, name)
    if row is None or row.product_id is None:
        return
    try:
        vid, pid = matter.subject_ids(certificate.subject)
    except matter.AttestationProfileError:
        return
    if vid is not None:
        pai_agrees_with_pool(s, row.product_id, name, PaiIds(vid.value, pid.value if pid is not None else None))


def rotated_pai(old: CertificateAuthority) -> PaiIds | None:
    """What a rotated CA's successor must fix: the IDs of a product's Matter PAI, None for an IDevID issuer."""
    return pai_ids(old) if old.product_id is not None else None


def check_pai_rotation(s: Session, old: CertificateAuthority, new_name: str) -> None:
    """Refuse to rotate a Matter PAI where its successor could not be made here (its PAA's key offline:
    ``ca_key_offline``, a ceremony step) or would disagree with the product's pool."""
    ids = rotated_pai(old)
    if ids is not None and old.product_id is not None:
        check_matter_pai(s, new_name, product_id=old.product_id, vid=ids.vendor_id, pid=ids.product_id)


def successor_in(
    s: Session,
    inst: Instance,
    old: CertificateAuthority,
    new_name: str,
    *,
    at: datetime,
    actor: str,
    detail: Mapping[str, object],
) -> authorities.CaView:
    """The successor of a rotated issuing CA, in the caller's transaction: a Matter PAI with the same vendor and
    product IDs under the same PAA for a PAI (the product's orders keep getting DACs), else an issuing CA of the
    same scope under the root."""
    ids = rotated_pai(old)
    if ids is None or old.product_id is None:
        scope = {"site_id": old.site_id, "product_id": old.product_id}
        return authorities.create_issuing_ca_in(s, inst, new_name, **scope, at=at, actor=actor, detail=detail)
    return create_matter_pai_in(
        s, inst, new_name, product_id=old.product_id, vid=ids.vendor_id, pid=ids.product_id,
        at=at, actor=actor, detail=detail,
    )  # fmt: skip
