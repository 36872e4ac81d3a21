"""``fabguard product ...`` and ``fabguard site ...``: what is built, and where."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import actor, command, console, fail, opened
from fabguard.domain.values import ProductId, SiteId
from fabguard.service import catalog

product_app = typer.Typer(help="Products and their device-key profile.", no_args_is_help=True)
site_app = typer.Typer(help="Contract-manufacturer sites.", no_args_is_help=True)


@command(product_app, "add")
def product_add(
    product_id: Annotated[str, typer.Argument(help="Slug, e.g. sensor-v2")],
    name: Annotated[str, typer.Option(help="Display name")],
    key_type: Annotated[
        list[str] | None, typer.Option(help="Allowed device key type (repeatable): ec-p256, ec-p384, ed25519")
    ] = None,
    lifetime_days: Annotated[
        int | None, typer.Option(help="Device certificate lifetime; default: no expiry (9999)")
    ] = None,
) -> None:
    """Add a product: the device key types its units may use and their certificates' lifetime."""
    with opened() as inst:
        by = actor(inst)
        p = catalog.create_product(
            inst,
            product_id=ProductId(product_id),
            name=name,
            key_types=key_type,
            cert_lifetime_days=lifetime_days,
            actor=by,
        )
    console.print(f"Product {p.id} created (keys: {p.key_types})")


@command(product_app, "compliance")
def product_compliance(
    product_id: Annotated[str, typer.Argument(help="The product")],
    support_until: Annotated[str, typer.Option(help="Last day of security support (CRA support period), YYYY-MM-DD")],
    contact: Annotated[str, typer.Option(help="Where vulnerabilities are reported: e-mail, mailto: or https:// URI")],
) -> None:
    """Set a product's CRA facts: the end of its support period and its vulnerability contact."""
    try:
        until = date.fromisoformat(support_until)
    except ValueError:
        fail(f"--support-until {support_until!r} is not a day (YYYY-MM-DD)")
    with opened() as inst:
        by = actor(inst)
        p = catalog.set_product_compliance(
            inst, ProductId(product_id), support_until=until, vulnerability_contact=contact, actor=by
        )
    console.print(f"Product {p.id}: supported until {p.support_until}, vulnerabilities to {p.vulnerability_contact}")


@command(product_app, "list")
def product_list() -> None:
    """The products, with their key types, certificate lifetime and CRA facts."""
    with opened() as inst:
        rows = catalog.list_products(inst)
    table = Table("id", "name", "key types", "cert lifetime", "supported until", "vulnerability contact")
    for p in rows:
        table.add_row(
            p.id,
            p.name,
            p.key_types,
            f"{p.cert_lifetime_days} d" if p.cert_lifetime_days else "no expiry",
            str(p.support_until or "-"),
            p.vulnerability_contact or "-",
        )
    console.print(table)


@command(site_app, "add")
def site_add(
    site_id: Annotated[str, typer.Argument(help="Slug, e.g. cm-shenzhen")],
    name: Annotated[str, typer.Option(help="Display name")],
) -> None:
    """Add a contract manufacturer's site, where orders are built and fixtures stand."""
    with opened() as inst:
        by = actor(inst)
        s = catalog.create_site(inst, site_id=SiteId(site_id), name=name, actor=by)
    console.print(f"Site {s.id} created")


@command(site_app, "list")
def site_list() -> None:
    """The sites."""
    with opened() as inst:
        rows = catalog.list_sites(inst)
    table = Table("id", "name")
    for s in rows:
        table.add_row(s.id, s.name)
    console.print(table)
