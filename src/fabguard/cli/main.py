"""``fabguard``: set up an instance, run the server, manage products, sites, orders and fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fabguard import __version__
from fabguard.cli.common import actor, console, friendly, opened, parse_time, principal, state
from fabguard.domain.values import Role
from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV
from fabguard.service import catalog, events, fixtures, orders, tokens
from fabguard.service.config import HOME_ENV
from fabguard.service.instance import Instance
from fabguard.service.seeding import init_instance

app = typer.Typer(
    help=(
        "FabGuard: quota-bound, test-gated device identity for contract manufacturing.\n\n"
        f"Every command works on one instance directory: --home, else ${HOME_ENV}, else "
        f"~/.local/share/fabguard. CA keys are encrypted with the passphrase in ${PASSPHRASE_ENV} "
        f"(or the file named by ${PASSPHRASE_FILE_ENV})."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(help="API tokens (admin, engineer, approver, auditor).", no_args_is_help=True)
product_app = typer.Typer(help="Products and their device-key profile.", no_args_is_help=True)
site_app = typer.Typer(help="Contract-manufacturer sites.", no_args_is_help=True)
order_app = typer.Typer(help="Production orders: quotas, validity windows, dual-control raises.", no_args_is_help=True)
fixture_app = typer.Typer(help="Fixtures (test stations): register, enrol, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(product_app, name="product")
app.add_typer(site_app, name="site")
app.add_typer(order_app, name="order")
app.add_typer(fixture_app, name="fixture")
unit_app = typer.Typer(help="Provisioned units: revocation.", no_args_is_help=True)
ca_app = typer.Typer(help="Certificate authorities: certificates and CRLs.", no_args_is_help=True)
app.add_typer(unit_app, name="unit")
app.add_typer(ca_app, name="ca")

REASON_HELP = "RFC 5280 reason: unspecified, key_compromise, ca_compromise, affiliation_changed, superseded, cessation_of_operation"


def _version(value: bool) -> None:
    if value:
        console.print(f"fabguard {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    home: Annotated[
        Path | None,
        typer.Option("--home", help=f"Instance directory (default: ${HOME_ENV} or ~/.local/share/fabguard)"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    if home is not None:
        state.home = home.expanduser()


@app.command()
@friendly
def init(
    org: Annotated[str, typer.Option("--org", help="Organisation name written into certificate subjects")],
    hostname: Annotated[
        list[str] | None, typer.Option("--hostname", help="Server name for its TLS certificate (repeatable)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="PostgreSQL URL (postgresql+psycopg://...); default SQLite")
    ] = None,
    crl_url: Annotated[
        str | None, typer.Option("--crl-url", help="Base URL where CRLs are published (default https://HOST:8443/crl)")
    ] = None,
    key_backend: Annotated[
        str, typer.Option("--key-backend", help="Where CA keys live: file (encrypted PKCS#8) or pkcs11 (HSM)")
    ] = "file",
    pkcs11_module: Annotated[
        str | None, typer.Option("--pkcs11-module", help="PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so")
    ] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option("--pkcs11-token", help="Token label (the PIN comes from FABGUARD_PKCS11_PIN[_FILE])")
    ] = None,
) -> None:
    """Create an instance: root, device-issuing and station CAs, a ledger key, the first admin token."""
    hosts = tuple(hostname) if hostname else ("127.0.0.1",)
    init_instance(
        state.home,
        organization=org,
        hostnames=hosts,
        database_url=database_url,
        crl_base_url=crl_url,
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
    )
    inst = Instance.open(state.home)
    try:
        _, secret = tokens.create_token(inst, name="admin", role=Role.ADMIN, actor="init")
    finally:
        inst.close()
    console.print(f"[green]Instance created[/] in {state.home}")
    console.print(f"Admin API token (shown once, only its hash is kept):\n[bold]{secret}[/]")


@app.command()
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port")] = 8443,
    workers: Annotated[int, typer.Option(help="Server processes (use PostgreSQL for more than one)")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the HTTPS server (fixtures authenticate with their client certificates)."""
    import uvicorn

    from fabguard.api.server import server_config
    from fabguard.runtime import tune_gc

    tune_gc()
    with opened() as inst:
        if workers > 1 and inst.db.is_sqlite:
            raise typer.BadParameter("several workers need PostgreSQL (init --database-url); SQLite is one process")
        inst.cas.issuer("issuing")  # fail now, not on the first unit, if the passphrase is wrong
        console.print(f"FabGuard {__version__} serving https://{host}:{port} ({workers} worker(s))")
        uvicorn.Server(server_config(inst, host=host, port=port, workers=workers, log_level=log_level)).run()


# Tokens
@token_app.command("create")
@friendly
def token_create(
    name: Annotated[str, typer.Option(help="Who holds it")],
    role: Annotated[Role, typer.Option(help="What it may do")],
) -> None:
    """Make an API token; it is printed once."""
    with opened() as inst:
        made, secret = tokens.create_token(inst, name=name, role=role, actor=actor(inst))
    console.print(f"Token {made.id} for {made.name} ({made.role.value}):\n[bold]{secret}[/]")


@token_app.command("list")
@friendly
def token_list() -> None:
    with opened() as inst:
        rows = tokens.list_tokens(inst)
    table = Table("id", "name", "role", "created", "revoked")
    for t in rows:
        table.add_row(
            t.id,
            t.name,
            t.role,
            t.created_at.isoformat(timespec="seconds"),
            t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "",
        )
    console.print(table)


@token_app.command("revoke")
@friendly
def token_revoke(token_id: str) -> None:
    with opened() as inst:
        tokens.revoke_token(inst, token_id, actor=actor(inst))
    console.print(f"Token {token_id} revoked")


# Products and sites
@product_app.command("add")
@friendly
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
    with opened() as inst:
        p = catalog.create_product(
            inst,
            product_id=product_id,
            name=name,
            key_types=key_type,
            cert_lifetime_days=lifetime_days,
            actor=actor(inst),
        )
    console.print(f"Product {p.id} created (keys: {p.key_types})")


@product_app.command("list")
@friendly
def product_list() -> None:
    with opened() as inst:
        rows = catalog.list_products(inst)
    table = Table("id", "name", "key types", "cert lifetime")
    for p in rows:
        table.add_row(p.id, p.name, p.key_types, f"{p.cert_lifetime_days} d" if p.cert_lifetime_days else "no expiry")
    console.print(table)


@site_app.command("add")
@friendly
def site_add(site_id: str, name: Annotated[str, typer.Option(help="Display name")]) -> None:
    with opened() as inst:
        s = catalog.create_site(inst, site_id=site_id, name=name, actor=actor(inst))
    console.print(f"Site {s.id} created")


@site_app.command("list")
@friendly
def site_list() -> None:
    with opened() as inst:
        rows = catalog.list_sites(inst)
    table = Table("id", "name")
    for s in rows:
        table.add_row(s.id, s.name)
    console.print(table)


# Orders
def _order_table(views: list[orders.OrderView]) -> Table:
    table = Table("order", "product", "site", "state", "quota", "used", "remaining", "refused", "valid until")
    for o in views:
        refused = ", ".join(f"{k} {v}" for k, v in o.refused.items()) or "-"
        table.add_row(
            o.id,
            o.product_id,
            o.site_id,
            o.state,
            str(o.quota),
            str(o.used),
            str(o.remaining),
            refused,
            o.valid_until.isoformat(timespec="seconds") if o.valid_until else "-",
        )
    return table


@order_app.command("create")
@friendly
def order_create(
    product: Annotated[str, typer.Option(help="Product id")],
    site: Annotated[str, typer.Option(help="Site id")],
    quota: Annotated[int, typer.Option(help="Units that may be provisioned")],
    order_id: Annotated[str | None, typer.Option("--id", help="Order id (generated if omitted)")] = None,
    valid_from: Annotated[str | None, typer.Option(help="ISO 8601 with zone; default now")] = None,
    valid_until: Annotated[str | None, typer.Option(help="ISO 8601 with zone; default open-ended")] = None,
) -> None:
    with opened() as inst:
        view = orders.create_order(
            inst,
            order_id=order_id,
            product_id=product,
            site_id=site,
            quota=quota,
            actor=actor(inst),
            valid_from=parse_time(valid_from, "--valid-from"),
            valid_until=parse_time(valid_until, "--valid-until"),
        )
    console.print(_order_table([view]))


@order_app.command("list")
@friendly
def order_list() -> None:
    with opened() as inst:
        console.print(_order_table(orders.list_orders(inst)))


@order_app.command("show")
@friendly
def order_show(order_id: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    with opened() as inst:
        view = orders.get_order(inst, order_id)
    if as_json:
        console.print_json(json.dumps(view.to_dict()))
    else:
        console.print(_order_table([view]))
        for c in view.pending_quota_changes:
            console.print(f"pending quota change {c['id']}: to {c['new_quota']} by {c['requested_by']} ({c['reason']})")


def _set_state(order_id: str, new_state: str) -> None:
    with opened() as inst:
        console.print(_order_table([orders.set_order_state(inst, order_id, new_state, actor=actor(inst))]))


@order_app.command("suspend")
@friendly
def order_suspend(order_id: str) -> None:
    """Stop provisioning on an order (resume later)."""
    _set_state(order_id, "suspended")


@order_app.command("resume")
@friendly
def order_resume(order_id: str) -> None:
    _set_state(order_id, "active")


@order_app.command("close")
@friendly
def order_close(order_id: str) -> None:
    """Close an order for good."""
    _set_state(order_id, "closed")


@order_app.command("quota")
@friendly
def order_quota(
    order_id: str,
    new_quota: Annotated[int, typer.Argument(help="The new quota")],
    reason: Annotated[str, typer.Option(help="Why (kept in the event log)")],
) -> None:
    """Change a quota: a decrease applies now; an increase waits for a second approver."""
    with opened() as inst:
        change = orders.request_quota_change(inst, order_id, new_quota, reason=reason, actor=actor(inst))
    if change["state"] == "pending":
        console.print(
            f"Quota raise {change['id']} to {new_quota} is [yellow]pending[/]: "
            f"a second person approves it with 'fabguard order approve {change['id']}'"
        )
    else:
        console.print(f"Quota of {order_id} is now {new_quota}")


@order_app.command("approve")
@friendly
def order_approve(change_id: int) -> None:
    """Approve a pending quota raise (needs an approver's token in FABGUARD_TOKEN, not the requester's)."""
    with opened() as inst:
        p = principal(inst)
        p.require(Role.APPROVER)
        change = orders.decide_quota_change(inst, change_id, approve=True, actor=p.actor)
    console.print(f"Quota change {change_id} applied: order {change['order_id']} quota {change['new_quota']}")


@order_app.command("reject")
@friendly
def order_reject(change_id: int) -> None:
    """Reject a pending quota raise (needs an approver's token in FABGUARD_TOKEN)."""
    with opened() as inst:
        p = principal(inst)
        p.require(Role.APPROVER)
        orders.decide_quota_change(inst, change_id, approve=False, actor=p.actor)
    console.print(f"Quota change {change_id} rejected")


# Fixtures
@fixture_app.command("add")
@friendly
def fixture_add(fixture_id: str, site: Annotated[str, typer.Option(help="The site the fixture stands in")]) -> None:
    """Register a fixture; prints its one-time enrolment token."""
    with opened() as inst:
        f, token = fixtures.create_fixture(inst, fixture_id=fixture_id, site_id=site, actor=actor(inst))
        ca = inst.cas.cert_path("root")
    console.print(f"Fixture {f.id} registered at {f.site_id}. One-time enrolment token:\n[bold]{token}[/]")
    console.print(
        f"On the line PC: fabguard fixture enroll --server https://HOST:8443 --token {token} "
        f"--ca {ca.name} --out DIR   (copy {ca} there)"
    )


@fixture_app.command("token")
@friendly
def fixture_token(fixture_id: str) -> None:
    """A fresh one-time enrolment token for a fixture (earlier unused ones lapse)."""
    with opened() as inst:
        token = fixtures.new_enrollment_token(inst, fixture_id, actor=actor(inst))
    console.print(token)


@fixture_app.command("list")
@friendly
def fixture_list() -> None:
    with opened() as inst:
        rows = [fixtures.fixture_dict(f) for f in fixtures.list_fixtures(inst)]
    table = Table("fixture", "site", "state", "enrolled", "cert serial", "revoked reason")
    for f in rows:
        table.add_row(
            str(f["id"]),
            str(f["site_id"]),
            str(f["state"]),
            str(f["enrolled_at"] or "-"),
            str(f["cert_serial"] or "-"),
            str(f["revoked_reason"] or ""),
        )
    console.print(table)


@fixture_app.command("revoke")
@friendly
def fixture_revoke(fixture_id: str, reason: Annotated[str, typer.Option(help="Why")]) -> None:
    """Revoke a fixture: every later call with its certificate is refused."""
    with opened() as inst:
        fixtures.revoke_fixture(inst, fixture_id, reason=reason, actor=actor(inst))
    console.print(f"Fixture {fixture_id} revoked")


@fixture_app.command("enroll")
@friendly
def fixture_enroll(
    server: Annotated[str, typer.Option(help="Server URL, e.g. https://fabguard.example:8443")],
    token: Annotated[str, typer.Option(help="The one-time enrolment token", envvar="FABGUARD_ENROLLMENT_TOKEN")],
    out: Annotated[Path, typer.Option(help="Directory for the key, certificate and CA chain")],
    ca: Annotated[Path, typer.Option(help="The instance's root CA certificate (PEM), to trust the server")],
) -> None:
    """On a line PC: make the fixture key here, enrol, and leave fixture.key/.pem and ca.pem in OUT."""
    from fabguard.fixture.client import enroll

    creds = enroll(server, token, out, ca_file=ca)
    console.print(f"Enrolled fixture {creds.fixture_id} at site {creds.site_id}; credentials in {out}")
    console.print(f"Try: curl --cert {creds.cert} --key {creds.key} --cacert {creds.ca} {server}/api/v1/fixture/whoami")


@unit_app.command("revoke")
@friendly
def unit_revoke(
    serial: str,
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "unspecified",
    product: Annotated[str | None, typer.Option(help="Product, if the serial exists in several")] = None,
) -> None:
    """Revoke a unit's certificate; its serial can never be provisioned again."""
    from fabguard.service import revocation

    with opened() as inst:
        done = revocation.revoke_unit(
            inst, serial, reason_code=reason, note=note, actor=actor(inst), product_id=product
        )
    console.print(f"Unit {serial} revoked (certificate {done['cert_serial']}); the issuing CA's CRL is updated")


@order_app.command("revoke-units")
@friendly
def order_revoke_units(
    order_id: str,
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "unspecified",
) -> None:
    """Revoke every unit provisioned on an order."""
    from fabguard.service import revocation

    with opened() as inst:
        n = revocation.revoke_order_units(inst, order_id, reason_code=reason, note=note, actor=actor(inst))
    console.print(f"{n} units of {order_id} revoked; the issuing CA's CRL is updated")


@ca_app.command("list")
@friendly
def ca_list() -> None:
    """The CA hierarchy: role, state, scope, key location, validity."""
    from fabguard.service import authorities

    with opened() as inst:
        cas = authorities.list_cas(inst)
        table = Table("name", "role", "state", "site", "product", "key", "not after", "CRL")
        for c in cas:
            table.add_row(
                c.name,
                c.role,
                c.state,
                c.site_id or "*",
                c.product_id or "*",
                c.key_ref.split(":")[0],
                c.not_after.date().isoformat() if c.not_after else "-",
                inst.cas.crl_url(c.name),
            )
    console.print(table)


@ca_app.command("create-issuing")
@friendly
def ca_create_issuing(
    name: str,
    site: Annotated[str | None, typer.Option(help="Only orders at this site use it")] = None,
    product: Annotated[str | None, typer.Option(help="Only orders of this product use it")] = None,
) -> None:
    """A new issuing CA, signed now by the root (whose key must be on this machine)."""
    from fabguard.service import authorities

    with opened() as inst:
        ca = authorities.create_issuing_ca(inst, name, site_id=site, product_id=product, actor=actor(inst))
    console.print(f"Issuing CA {ca.name} created ({ca.subject}); new orders in its scope use it")


@ca_app.command("create-matter-pai")
@friendly
def ca_create_matter_pai(
    name: str,
    product: Annotated[str, typer.Option(help="The product whose units get Matter DACs")],
    vid: Annotated[str, typer.Option(help="Matter vendor ID, hex (e.g. FFF1)")],
    pid: Annotated[str, typer.Option(help="Matter product ID, hex (e.g. 8000)")],
) -> None:
    """A Matter PAI for a product (under this vendor's PAA, made on first use): its units get DACs."""
    from fabguard.domain.errors import InvalidRequest
    from fabguard.service import authorities

    try:
        vid_n, pid_n = int(vid, 16), int(pid, 16)
    except ValueError:
        raise InvalidRequest("--vid and --pid are hexadecimal, e.g. FFF1 and 8000") from None
    with opened() as inst:
        ca = authorities.create_matter_pai(inst, name, product_id=product, vid=vid_n, pid=pid_n, actor=actor(inst))
    console.print(f"Matter PAI {ca.name} created ({ca.subject}); new orders of {product} get DACs")


@ca_app.command("csr")
@friendly
def ca_csr(
    name: str,
    out: Annotated[Path, typer.Option(help="Write the CSR (PEM) here, for the offline root to sign")],
    site: Annotated[str | None, typer.Option(help="Only orders at this site will use it")] = None,
    product: Annotated[str | None, typer.Option(help="Only orders of this product will use it")] = None,
) -> None:
    """For an offline root: make an issuing CA key here and write its CSR; then 'fabguard ca import'."""
    from fabguard.service import authorities

    with opened() as inst:
        csr = authorities.issuing_csr(inst, name, site_id=site, product_id=product, actor=actor(inst))
    out.write_text(csr)
    console.print(f"CSR for {name} written to {out}; sign it with the root and run 'fabguard ca import {name} CERT'")


@ca_app.command("import")
@friendly
def ca_import(
    name: str, certificate: Annotated[Path, typer.Argument(help="The PEM certificate the root signed")]
) -> None:
    """Install the certificate signed by the offline root (checked against the key and the root)."""
    from fabguard.service import authorities

    with opened() as inst:
        ca = authorities.import_issuing_certificate(inst, name, certificate.read_bytes(), actor=actor(inst))
    console.print(f"CA {ca.name} is {ca.state}")


@ca_app.command("rotate")
@friendly
def ca_rotate(name: str, new_name: Annotated[str, typer.Option(help="Name of the successor CA")]) -> None:
    """New orders go to a fresh CA of the same scope; the old one retires, its certificates keep verifying."""
    from fabguard.service import authorities

    with opened() as inst:
        ca = authorities.rotate_issuing_ca(inst, name, new_name=new_name, actor=actor(inst))
    console.print(f"{name} retired; new orders use {ca.name}")


@ca_app.command("revoke")
@friendly
def ca_revoke(
    name: str,
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "ca_compromise",
) -> None:
    """Put a CA on the root's CRL (contain a breached CM): it signs nothing more."""
    from fabguard.service import authorities

    with opened() as inst:
        authorities.revoke_ca(inst, name, reason_code=reason, note=note, actor=actor(inst))
    console.print(f"CA {name} revoked; the root's CRL is updated")


@ca_app.command("crl")
@friendly
def ca_crl(
    name: Annotated[str, typer.Argument(help="A CA name (see 'fabguard ca list')")],
    out: Annotated[Path | None, typer.Option(help="Write the DER CRL here")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Sign a new CRL now")] = False,
) -> None:
    """Show (or write) a CA's current CRL."""
    from cryptography import x509

    from fabguard.service import revocation

    with opened() as inst:
        der = revocation.refresh_crl(inst, name) if refresh else revocation.current_crl(inst, name)
    crl = x509.load_der_x509_crl(der)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    console.print(f"CRL of {name}: number {number}, {len(crl)} revoked, next update {crl.next_update_utc}")
    if out:
        out.write_bytes(der)


@app.command("events")
@friendly
def events_cmd(
    after: Annotated[int, typer.Option(help="Only events after this sequence number")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. unit.refused")] = None,
    order: Annotated[str | None, typer.Option(help="Only this order")] = None,
) -> None:
    """The decision log, oldest first."""
    with opened() as inst:
        rows = events.list_events(inst, after=after, limit=limit, kind=kind, order_id=order)
    table = Table("seq", "at", "kind", "actor", "order", "serial", "code")
    for e in rows:
        table.add_row(
            str(e["seq"]),
            e["at"][:19],
            e["kind"],
            e["actor"] or "",
            e["order_id"] or "",
            e["serial"] or "",
            e["code"] or "",
        )
    console.print(table)


def _register_more() -> None:
    from fabguard.cli.demo import demo
    from fabguard.cli.firmware import firmware_app
    from fabguard.cli.ledger import audit_app, ledger_app
    from fabguard.cli.stats import stats_app

    app.command("demo")(demo)
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(audit_app, name="audit")
    app.add_typer(firmware_app, name="firmware")
    app.add_typer(stats_app, name="stats")


_register_more()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
