"""``fabguard product ...`` and ``fabguard site ...``: what is built, and where."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import JsonOption, actor, command, console, fail, opened, print_json
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.issuance import AttestationPolicy
from fabguard.domain.values import ProductId, SiteId
from fabguard.service.catalog import product_catalog
from fabguard.service.provisioning import attestation

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
        p = product_catalog.create_product(
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
        p = product_catalog.set_product_compliance(
            inst, ProductId(product_id), support_until=until, vulnerability_contact=contact, actor=by
        )
    console.print(f"Product {p.id}: supported until {p.support_until}, vulnerabilities to {p.vulnerability_contact}")


@command(product_app, "list")
def product_list(as_json: JsonOption = False) -> None:
    """The products, with their key types, certificate lifetime and CRA facts."""
    with opened() as inst:
        rows = product_catalog.list_products(inst)
    if as_json:
        print_json([product_catalog.product_dict(p) for p in rows])
        return
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


@command(product_app, "attestation")
def product_attestation(
    product_id: Annotated[str, typer.Argument(help="The product")],
    policy: Annotated[
        str | None, typer.Option(help="Set the key-attestation policy: off, optional or required")
    ] = None,
) -> None:
    """Show (or with --policy set) the product's key-attestation policy and its trusted roots."""
    with opened() as inst:
        pid = ProductId.named(product_id)
        if policy is not None:
            attestation.set_policy(inst, pid, AttestationPolicy.parse(policy), actor=actor(inst))
        shown = attestation.settings(inst, pid)
    console.print(f"Product {product_id}: attestation {shown['policy']}")
    table = Table("kind", "sha256", "subject")
    for root in shown["roots"]:  # type: ignore[attr-defined]
        table.add_row(root["kind"], root["sha256"], root["subject"])
    console.print(table)


@command(product_app, "trust-root")
def product_trust_root(
    product_id: Annotated[str, typer.Argument(help="The product")],
    certificate: Annotated[Path, typer.Argument(help="PEM file of the CA certificate")],
    kind: Annotated[str, typer.Option(help="tpm (issues AK certificates) or se (a secure-element vendor's CA)")],
) -> None:
    """Trust a TPM maker's or SE vendor's attestation CA for the product's units."""
    try:
        pem = certificate.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {certificate}: {exc}", code="certificate_invalid") from None
    with opened() as inst:
        row = attestation.add_root(inst, ProductId.named(product_id), kind, pem, actor=actor(inst))
    console.print(f"Product {product_id} trusts the {row['kind']} root {row['subject']} ({row['sha256']})")


@command(product_app, "distrust-root")
def product_distrust_root(
    product_id: Annotated[str, typer.Argument(help="The product")],
    sha256: Annotated[str, typer.Argument(help="The root certificate's SHA-256, as `product attestation` shows")],
) -> None:
    """Stop trusting an attestation root; certificates already issued stay as they are."""
    with opened() as inst:
        attestation.remove_root(inst, ProductId.named(product_id), sha256, actor=actor(inst))
    console.print(f"Product {product_id} no longer trusts root {sha256}")


@command(site_app, "add")
def site_add(
    site_id: Annotated[str, typer.Argument(help="Slug, e.g. cm-shenzhen")],
    name: Annotated[str, typer.Option(help="Display name")],
) -> None:
    """Add a contract manufacturer's site, where orders are built and fixtures stand."""
    with opened() as inst:
        by = actor(inst)
        s = product_catalog.create_site(inst, site_id=SiteId(site_id), name=name, actor=by)
    console.print(f"Site {s.id} created")


@command(site_app, "list")
def site_list(as_json: JsonOption = False) -> None:
    """The sites."""
    with opened() as inst:
        rows = product_catalog.list_sites(inst)
    if as_json:
        print_json([{"id": s.id, "name": s.name} for s in rows])
        return
    table = Table("id", "name")
    for s in rows:
        table.add_row(s.id, s.name)
    console.print(table)
