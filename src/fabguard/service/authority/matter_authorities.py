"""Matter attestation CAs: a PAI per product under the vendor's PAA (made on first use).

Creating a PAI is two people's, like any CA (``ca_acts``): ``check_matter_pai`` refuses a request when it
is made, ``create_matter_pai_in`` carries it out in the approval's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict
from fabguard.pki import matter
from fabguard.service.authority import authorities
from fabguard.service.core.ca_registry import EXTERNAL_KEY, OFFLINE_ROOT_KEY
from fabguard.service.core.instance import Instance
from fabguard.store.models import CertificateAuthority


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
