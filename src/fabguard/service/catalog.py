"""Products (what is built, with its device-key profile) and CM sites (where it is built)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.domain.values import KeyType, ProductId, SiteId, parse_key_types
from fabguard.service.instance import Instance
from fabguard.store.db import append_event
from fabguard.store.models import Product, Site


def _display_name(name: str, what: str) -> str:
    if not name or len(name) > 200 or not name.isprintable():
        raise InvalidRequest(f"a {what} name must be 1-200 printable characters")
    return name


def create_product(
    inst: Instance,
    *,
    product_id: ProductId,
    name: str,
    key_types: list[str] | None = None,
    cert_lifetime_days: int | None = None,
    actor: str,
) -> Product:
    types = parse_key_types(key_types or [KeyType.EC_P256.value])
    if cert_lifetime_days is not None and not 1 <= cert_lifetime_days <= 36500:
        raise InvalidRequest("cert_lifetime_days must be between 1 and 36500 (or unset for no expiry)")
    now = inst.clock()
    product = Product(
        id=product_id.value,
        name=_display_name(name, "product"),
        key_types=",".join(t.value for t in types),
        cert_lifetime_days=cert_lifetime_days,
        created_at=now,
    )
    try:
        with inst.db.transaction() as s:
            s.add(product)
            s.flush()
            append_event(s, "product.created", at=now, actor=actor, detail={"product_id": product_id.value})
    except IntegrityError:
        raise Conflict(f"product {product_id} already exists", code="product_exists") from None
    return product


def product_dict(p: Product) -> dict[str, object]:
    return {
        "id": p.id,
        "name": p.name,
        "key_types": p.key_types.split(","),
        "cert_lifetime_days": p.cert_lifetime_days,
    }


def list_products(inst: Instance) -> list[Product]:
    with inst.db.read() as s:
        return list(s.execute(select(Product).order_by(Product.id)).scalars())


def create_site(inst: Instance, *, site_id: SiteId, name: str, actor: str) -> Site:
    now = inst.clock()
    site = Site(id=site_id.value, name=_display_name(name, "site"), created_at=now)
    try:
        with inst.db.transaction() as s:
            s.add(site)
            s.flush()
            append_event(s, "site.created", at=now, actor=actor, detail={"site_id": site_id.value})
    except IntegrityError:
        raise Conflict(f"site {site_id} already exists", code="site_exists") from None
    return site


def list_sites(inst: Instance) -> list[Site]:
    with inst.db.read() as s:
        return list(s.execute(select(Site).order_by(Site.id)).scalars())
