"""Matter attestation CAs: a PAI per product under the vendor's PAA (made on first use).

Creating a PAI is two people's, like any CA (``ca_acts``): ``check_matter_pai`` refuses a request when it
is made, ``create_matter_pai_in`` carries it out in the approval's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from fabguard.pki import matter
from fabguard.service.authority import authorities
from fabguard.service.core.instance import Instance
from fabguard.store.models import CertificateAuthority


def check_matter_pai(
    s: Session, name: str, *, product_id: str, vid: int, pid: int | None
) -> tuple[matter.VendorId, matter.ProductId | None]:
    """Refuse a PAI whose product is unknown, whose name is taken or whose IDs are not Matter's."""
    ids = matter.VendorId(vid), matter.ProductId(pid) if pid is not None else None
    authorities.check_new_ca(s, name, site_id=None, product_id=product_id)
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
    paa_name = f"matter-paa-{str(vendor).lower()}"
    if s.get(CertificateAuthority, paa_name) is None:
        paa_key = authorities.new_ca_key(inst, paa_name)
        paa = matter.paa_certificate(
            inst.keys.load(paa_key), f"{inst.config.organization} Matter PAA {vendor}", at, vendor
        )
        paa_detail = {**detail, "vid": str(vendor)}
        authorities.register_ca(
            s, paa_name, "active", (None, None), paa_key, paa.certificate,
            at=at, actor=actor, kind="ca.created", detail=paa_detail, role="paa",
        )  # fmt: skip
    key_ref = authorities.new_ca_key(inst, name)
    cert = matter.pai_certificate(
        inst.cas.issuer(paa_name, s),
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
