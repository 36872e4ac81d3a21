"""Products (what is built, with its device-key profile and CRA facts) and CM sites (where it is built)."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound
from fabguard.domain.values import KeyType, ProductId, SiteId, parse_key_types
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
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
        "support_until": p.support_until.isoformat() if p.support_until else None,
        "vulnerability_contact": p.vulnerability_contact,
    }


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_CONTACT = 500


def _contact(text: str) -> str:
    """A vulnerability contact: an e-mail address, a ``mailto:`` URI or an ``https://`` address."""
    ok = (
        isinstance(text, str)
        and 0 < len(text) <= MAX_CONTACT
        and text.isprintable()
        and (
            _EMAIL.match(text.removeprefix("mailto:")) is not None
            or (text.startswith("https://") and len(text) > len("https://") and " " not in text)
        )
    )
    if not ok:
        raise InvalidRequest(
            f"a vulnerability contact is an e-mail address, a mailto: URI or an https:// address "
            f"(at most {MAX_CONTACT} characters)",
            code="invalid_vulnerability_contact",
        )
    return text


def set_product_compliance(
    inst: Instance, product_id: ProductId, *, support_until: date, vulnerability_contact: str, actor: str
) -> Product:
    """Set a product's end of security support (a day) and where vulnerabilities are reported (CRA)."""
    contact = _contact(vulnerability_contact)
    if not date(2000, 1, 1) <= support_until <= date(2200, 12, 31):
        raise InvalidRequest(
            "support_until must be a day between 2000-01-01 and 2200-12-31", code="invalid_support_period"
        )
    now = inst.clock()
    with inst.db.transaction() as s:
        product = s.get(Product, product_id.value, with_for_update=True)
        if product is None:
            raise NotFound(f"no product {product_id}", code="product_not_found")
        if support_until < product.created_at.date():
            raise InvalidRequest(
                f"support_until {support_until} is before the product was created ({product.created_at.date()})",
                code="invalid_support_period",
            )
        product.support_until, product.vulnerability_contact = support_until, contact
        append_event(
            s,
            "product.compliance_set",
            at=now,
            actor=actor,
            detail={
                "product_id": product.id,
                "support_until": support_until.isoformat(),
                "vulnerability_contact": contact,
            },
        )
        return product


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
