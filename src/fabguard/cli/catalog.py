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
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.issuance import AttestationPolicy
from fabguard.domain.values import ProductId, SiteId
from fabguard.service.catalog import identity_pools, product_catalog
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


def _pool_sections(
    serial: tuple[str | None, int, str, bool],
    mac: tuple[str | None, int, int, int | None],
    matter: tuple[int | None, int | None, int, int, int],
) -> dict[str, object]:
    """The declaration as the API takes it, from the command's options (a section only where it was given)."""
    (prefix, width, check, required), (mac_prefix, per_unit, first, count), (vid, pid, flow, disc, its) = (
        serial,
        mac,
        matter,
    )
    body: dict[str, object] = {}
    if prefix is not None:
        body["serials"] = {"prefix": prefix, "width": width, "check": check, "required": required}
    if mac_prefix is not None:
        body["macs"] = {"prefix": mac_prefix, "per_unit": per_unit, "first": first, "count": count}
    if vid is not None or pid is not None:
        body["matter"] = {"vendor_id": vid, "product_id": pid, "flow": flow, "discovery": disc, "iterations": its}
    return body


@command(product_app, "identities")
def product_identities(
    product_id: Annotated[str, typer.Argument(help="The product")],
    serial_prefix: Annotated[
        str | None, typer.Option(help="Serial format: the prefix ('' for none), e.g. ACME-26-")
    ] = None,
    serial_width: Annotated[int, typer.Option(help="Serial format: digits of the counter (1-18)")] = 6,
    serial_check: Annotated[str, typer.Option(help="Check character: iso7064-mod-37-36 or luhn-mod-36")] = (
        "iso7064-mod-37-36"
    ),
    require_allocated_serials: Annotated[
        bool, typer.Option(help="Provision only serials allocated to the unit's order (serial_not_allocated)")
    ] = False,
    mac_prefix: Annotated[
        str | None, typer.Option(help="MAC block: the IEEE assignment, MA-L 00-1B-63, MA-M 70-B3-D5-1, MA-S 9 digits")
    ] = None,
    mac_per_unit: Annotated[int, typer.Option(help="MAC block: consecutive addresses per unit (1-64)")] = 1,
    mac_first: Annotated[int, typer.Option(help="MAC block: offset of its first address in the assignment")] = 0,
    mac_count: Annotated[int | None, typer.Option(help="MAC block: addresses in it (default: to the end)")] = None,
    matter_vendor_id: Annotated[int | None, typer.Option(help="Matter: vendor ID (e.g. 65521 = 0xFFF1)")] = None,
    matter_product_id: Annotated[int | None, typer.Option(help="Matter: product ID")] = None,
    matter_flow: Annotated[int, typer.Option(help="Matter: commissioning flow 0, 1 or 2")] = 0,
    matter_discovery: Annotated[int, typer.Option(help="Matter: discovery bits (2 BLE, 4 on-network, 32 Thread)")] = 2,
    matter_iterations: Annotated[int, typer.Option(help="Matter: SPAKE2+ iterations (1000-100000)")] = 10000,
    as_json: JsonOption = False,
) -> None:
    """Show the product's identity pools, or declare them with any of the serial, MAC and Matter options
    (replaceable until one unit's identities are allocated; docs/identities.md)."""
    body = _pool_sections(
        (serial_prefix, serial_width, serial_check, require_allocated_serials),
        (mac_prefix, mac_per_unit, mac_first, mac_count),
        (matter_vendor_id, matter_product_id, matter_flow, matter_discovery, matter_iterations),
    )
    pid = ProductId.named(product_id)

    def local(inst: Instance) -> dict[str, Any]:
        if body:
            return identity_pools.set_pools(inst, pid, pool_from_json(body), actor=actor(inst))
        return identity_pools.pools(inst, pid)

    def on_server(api: Remote) -> dict[str, Any]:
        path = f"/api/v1/products/{pid.value}/identities"
        return dict(api.put(path, body) if body else api.get(path))

    shown = through(local, on_server)
    if as_json:
        print_json(shown)
        return
    for section in ("serials", "macs", "matter"):
        console.print(f"{section}: {shown[section] if shown[section] is not None else '-'}")
    console.print(
        f"next serial {shown['next_serial']}, next MAC unit {shown['next_mac_unit']}, "
        f"{shown['units_allocated']} units allocated"
    )


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
