"""``fabguard ca ...``: the CA hierarchy: issuing CAs and Matter PAIs, offline-root signing, rotation, CRLs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from rich.table import Table

from fabguard.cli.common import REASON_HELP, JsonOption, actor, command, console, opened, print_json, requester
from fabguard.cli.remote import through
from fabguard.domain import values
from fabguard.domain.errors import InvalidRequest
from fabguard.service.approvals import requests
from fabguard.service.approvals.registry import Parameters
from fabguard.service.authority import authorities, revocation
from fabguard.service.authority.ca_acts import CaCreation, CaImport, CaRevocation, CaRotation, MatterPaiCreation

ca_app = typer.Typer(
    help="Certificate authorities: certificates and CRLs. Creating, importing, rotating and revoking a CA "
    "wait for a second person ('fabguard approval approve ID').",
    no_args_is_help=True,
)


def _ask(target: str, act: Callable[[], Parameters], path: str, body: dict[str, Any]) -> None:
    """Ask for a CA act under dual control, locally (as the requester) or through the server (202, pending),
    and say how it is approved."""
    pending = through(
        lambda inst: requests.request(inst, target, act(), by=requester(inst)).to_dict(),
        lambda api: api.post(path, body),
    )
    until = datetime.fromisoformat(str(pending["expires_at"])).isoformat(timespec="seconds")
    console.print(
        f"Request {pending['id']} to {pending['summary']} ({pending['target']}) waits for a second person until "
        f"{until}: 'fabguard approval approve {pending['id']}' with an approver's token"
    )


CaName = Annotated[str, typer.Argument(help="The CA's name (see 'fabguard ca list')")]


@command(ca_app, "list")
def ca_list(as_json: JsonOption = False) -> None:
    """The CA hierarchy: role, state, scope, key location, validity."""
    cas, crls = through(
        lambda inst: (
            [c.to_dict() for c in authorities.list_cas(inst)],
            {c.name: inst.cas.crl_url(c.name) for c in authorities.list_cas(inst)},
        ),
        lambda api: (api.get("/api/v1/cas"), {}),
    )
    if as_json:
        print_json(cas)
        return
    table = Table("name", "role", "state", "site", "product", "key", "not after", "CRL")
    for c in cas:
        table.add_row(
            str(c["name"]),
            str(c["role"]),
            str(c["state"]),
            str(c["site_id"] or "*"),
            str(c["product_id"] or "*"),
            str(c["key"]),
            str(c["not_after"])[:10] if c["not_after"] else "-",
            crls.get(str(c["name"]), "-"),
        )
    console.print(table)


@command(ca_app, "create-issuing")
def ca_create_issuing(
    name: Annotated[str, typer.Argument(help="A name for the new CA")],
    site: Annotated[str | None, typer.Option(help="Only orders at this site use it")] = None,
    product: Annotated[str | None, typer.Option(help="Only orders of this product use it")] = None,
) -> None:
    """Ask for a new issuing CA; once a second person approves, its key is made and the root (whose key
    must be on the server) signs it, and new orders in its scope use it."""
    body = {"name": name, "site_id": site, "product_id": product}
    _ask(values.CaName(name).value, lambda: CaCreation(site, product), "/api/v1/cas", body)


@command(ca_app, "create-matter-pai")
def ca_create_matter_pai(
    name: Annotated[str, typer.Argument(help="A name for the new PAI")],
    product: Annotated[str, typer.Option(help="The product whose units get Matter DACs")],
    vid: Annotated[str, typer.Option(help="Matter vendor ID, hex (e.g. FFF1)")],
    pid: Annotated[str, typer.Option(help="Matter product ID, hex (e.g. 8000)")],
) -> None:
    """Ask for a Matter PAI for a product (under this vendor's PAA, made on first use): once a second
    person approves, its units get DACs. Its VID (and PID) must be the product's Matter pool's."""
    try:
        vid_n, pid_n = int(vid, 16), int(pid, 16)
    except ValueError:
        raise InvalidRequest("--vid and --pid are hexadecimal, e.g. FFF1 and 8000") from None
    body = {"name": name, "product_id": product, "vid": vid_n, "pid": pid_n}
    _ask(values.CaName(name).value, lambda: MatterPaiCreation(product, vid_n, pid_n), "/api/v1/cas/matter-pai", body)


@command(ca_app, "csr")
def ca_csr(
    name: Annotated[str, typer.Argument(help="A name for the new issuing CA")],
    out: Annotated[Path, typer.Option(help="Write the CSR (PEM) here, for the offline root to sign")],
    site: Annotated[str | None, typer.Option(help="Only orders at this site will use it")] = None,
    product: Annotated[str | None, typer.Option(help="Only orders of this product will use it")] = None,
) -> None:
    """For an offline root: make an issuing CA key here and write its CSR; then 'fabguard ca import'
    (the CA signs nothing until then)."""
    csr = through(
        lambda inst: authorities.issuing_csr(
            inst, values.CaName(name), site_id=site, product_id=product, actor=actor(inst)
        ),
        lambda api: str(api.post(f"/api/v1/cas/{name}/csr", {"site_id": site, "product_id": product})["csr"]),
    )
    out.write_text(csr)
    console.print(f"CSR for {name} written to {out}; sign it with the root and run 'fabguard ca import {name} CERT'")


@command(ca_app, "import")
def ca_import(
    name: Annotated[str, typer.Argument(help="The name given to 'fabguard ca csr'")],
    certificate: Annotated[Path, typer.Argument(help="The PEM certificate the root signed")],
) -> None:
    """Ask for the certificate signed by the offline root to be installed (checked now against the key
    and the root); the CA signs once a second person approves."""
    pem = certificate.read_bytes()
    _ask(name, lambda: CaImport.from_pem(pem), f"/api/v1/cas/{name}/certificate", {"certificate": pem.decode()})


@command(ca_app, "rotate")
def ca_rotate(name: CaName, new_name: Annotated[str, typer.Option(help="Name of the successor CA")]) -> None:
    """Ask for new orders to go to a fresh CA of the same scope (a Matter PAI's successor is a PAI with its
    vendor and product IDs under the same PAA); once approved the old one retires, its certificates keep
    verifying."""
    _ask(name, lambda: CaRotation(values.CaName(new_name).value), f"/api/v1/cas/{name}/rotate", {"new_name": new_name})


@command(ca_app, "revoke")
def ca_revoke(
    name: CaName,
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "ca_compromise",
) -> None:
    """Ask for a CA to be put on the root's CRL (contain a breached CM): once approved it signs nothing more."""
    _ask(name, lambda: CaRevocation(reason, note), f"/api/v1/cas/{name}/revoke", {"reason": reason, "note": note})


@command(ca_app, "crl")
def ca_crl(
    name: Annotated[str, typer.Argument(help="A CA name (see 'fabguard ca list')")],
    out: Annotated[Path | None, typer.Option(help="Write the DER CRL here")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Sign a new CRL now")] = False,
) -> None:
    """Show (or write) a CA's current CRL."""
    with opened() as inst:
        der = revocation.refresh_crl(inst, name) if refresh else revocation.current_crl(inst, name)
    crl = x509.load_der_x509_crl(der)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    console.print(f"CRL of {name}: number {number}, {len(crl)} revoked, next update {crl.next_update_utc}")
    if out:
        out.write_bytes(der)
