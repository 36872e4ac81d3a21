"""``fabguard product ...`` and ``fabguard site ...``: what is built, and where."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from fabguard.cli.common import Instance, JsonOption, actor, command, console, fail, print_json
from fabguard.cli.remote import Remote, through
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
    body: dict[str, object] = {"id": product_id, "name": name, "cert_lifetime_days": lifetime_days}
    if key_type:
        body["key_types"] = key_type
    p = through(
        lambda inst: product_catalog.product_dict(
            product_catalog.create_product(
                inst,
                product_id=ProductId(product_id),
                name=name,
                key_types=key_type,
                cert_lifetime_days=lifetime_days,
                actor=actor(inst),
            )
        ),
        lambda api: api.post("/api/v1/products", body),
    )
    console.print(f"Product {p['id']} created (keys: {','.join(cast(list[str], p['key_types']))})")


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
    p = through(
        lambda inst: product_catalog.product_dict(
            product_catalog.set_product_compliance(
                inst, ProductId(product_id), support_until=until, vulnerability_contact=contact, actor=actor(inst)
            )
        ),
        lambda api: api.put(
            f"/api/v1/products/{product_id}/compliance",
            {"support_until": until.isoformat(), "vulnerability_contact": contact},
        ),
    )
    console.print(
        f"Product {p['id']}: supported until {p['support_until']}, vulnerabilities to {p['vulnerability_contact']}"
    )


@command(product_app, "list")
def product_list(as_json: JsonOption = False) -> None:
    """The products, with their key types, certificate lifetime and CRA facts."""
    rows: list[dict[str, Any]] = through(
        lambda inst: [product_catalog.product_dict(p) for p in product_catalog.list_products(inst)],
        lambda api: api.get("/api/v1/products"),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "key types", "cert lifetime", "supported until", "vulnerability contact")
    for p in rows:
        table.add_row(
            p["id"],
            p["name"],
            ",".join(p["key_types"]),
            f"{p['cert_lifetime_days']} d" if p["cert_lifetime_days"] else "no expiry",
            p["support_until"] or "-",
            p["vulnerability_contact"] or "-",
        )
    console.print(table)


@command(product_app, "attestation")
def product_attestation(
    product_id: Annotated[str, typer.Argument(help="The product")],
    policy: Annotated[
        str | None, typer.Option(help="Set the key-attestation policy: off, optional or required")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show (or with --policy set) the product's key-attestation policy and its trusted roots."""
    new = AttestationPolicy.parse(policy) if policy is not None else None
    path = f"/api/v1/products/{product_id}/attestation"

    def local(inst: Instance) -> dict[str, object]:
        pid = ProductId.named(product_id)
        if new is not None:
            attestation.set_policy(inst, pid, new, actor=actor(inst))
        return attestation.settings(inst, pid)

    def on_server(api: Remote) -> dict[str, object]:
        if new is not None:
            api.put(path, {"policy": new.value})
        return cast(dict[str, object], api.get(path))

    shown = through(local, on_server)
    if as_json:
        print_json(shown)
        return
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
    row = through(
        lambda inst: attestation.add_root(inst, ProductId.named(product_id), kind, pem, actor=actor(inst)),
        lambda api: api.post(f"/api/v1/products/{product_id}/attestation/roots", {"kind": kind, "certificate": pem}),
    )
    console.print(f"Product {product_id} trusts the {row['kind']} root {row['subject']} ({row['sha256']})")


@command(product_app, "distrust-root")
def product_distrust_root(
    product_id: Annotated[str, typer.Argument(help="The product")],
    sha256: Annotated[str, typer.Argument(help="The root certificate's SHA-256, as `product attestation` shows")],
) -> None:
    """Stop trusting an attestation root; certificates already issued stay as they are."""
    through(
        lambda inst: attestation.remove_root(inst, ProductId.named(product_id), sha256, actor=actor(inst)),
        lambda api: api.delete(f"/api/v1/products/{product_id}/attestation/roots/{sha256}"),
    )
    console.print(f"Product {product_id} no longer trusts root {sha256}")


@command(site_app, "add")
def site_add(
    site_id: Annotated[str, typer.Argument(help="Slug, e.g. cm-shenzhen")],
    name: Annotated[str, typer.Option(help="Display name")],
) -> None:
    """Add a contract manufacturer's site, where orders are built and fixtures stand."""
    made = through(
        lambda inst: product_catalog.create_site(inst, site_id=SiteId(site_id), name=name, actor=actor(inst)).id,
        lambda api: api.post("/api/v1/sites", {"id": site_id, "name": name})["id"],
    )
    console.print(f"Site {made} created")


@command(site_app, "list")
def site_list(as_json: JsonOption = False) -> None:
    """The sites."""
    rows: list[dict[str, str]] = through(
        lambda inst: [{"id": s.id, "name": s.name} for s in product_catalog.list_sites(inst)],
        lambda api: api.get("/api/v1/sites"),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name")
    for row in rows:
        table.add_row(row["id"], row["name"])
    console.print(table)
