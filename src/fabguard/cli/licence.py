"""``fabguard licence ...``: issue a signed feature licence to a unit, and verify one as its device would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from rich.table import Table

from fabguard.cli.common import (
    Instance,
    JsonOption,
    actor,
    command,
    console,
    fail,
    parse_time,
    print_json,
    requester,
)
from fabguard.cli.remote import through
from fabguard.domain.values import ProductId, Serial
from fabguard.fixture.licence import LicenceInvalid, verify_licence
from fabguard.service.approvals import requests
from fabguard.service.royalties import licences
from fabguard.service.royalties.licence_acts import LicenceSignerRevocation

licence_app = typer.Typer(help="Signed feature licences bound to a device certificate.", no_args_is_help=True)


@command(licence_app, "issue")
def issue(
    serial: Annotated[str, typer.Option(help="The provisioned unit's serial")],
    feature: Annotated[list[str], typer.Option(help="A feature it may use (repeatable)")],
    out: Annotated[Path, typer.Option(help="Where to write the signed licence (JSON)")],
    not_after: Annotated[
        str | None, typer.Option(help="Expiry (ISO 8601 with zone, or a date: 00:00 UTC); default none")
    ] = None,
    product: Annotated[str | None, typer.Option(help="The product, if the serial is in several")] = None,
) -> None:
    """Issue a licence (a ledger event) bound to the unit's current device certificate."""
    until = parse_time(not_after, "--not-after")
    wanted = {"features": feature, "not_after": until.isoformat() if until else None, "product_id": product}
    issued: dict[str, Any] = through(
        lambda inst: licences.issue_licence(
            inst,
            Serial.parse(serial),
            features=feature,
            actor=actor(inst),
            not_after=until,
            product_id=ProductId.named(product) if product else None,
        ).to_dict(),
        lambda api: api.post(f"/api/v1/units/{serial}/licences", wanted),
    )
    document = {k: v for k, v in issued.items() if k not in ("id", "ledger_entry")}
    out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    body = document["licence"]
    console.print(
        f"Licence {issued['id']} for {body['device']['serial']} ({', '.join(body['features'])}), "
        f"expires {body['not_after'] or 'never'}; ledger entry {issued['ledger_entry']}; written to {out}"
    )


@command(licence_app, "list")
def licence_list(serial: Annotated[str, typer.Option(help="The unit's serial")], as_json: JsonOption = False) -> None:
    """The licences issued to a unit, oldest first (their signed documents with --json)."""
    found: list[dict[str, Any]] = through(
        lambda inst: licences.licences_of(inst, serial), lambda api: api.get(f"/api/v1/units/{serial}/licences")
    )
    if as_json:
        print_json(found)
        return
    for doc in found:
        body = doc["licence"]
        console.print(f"{doc['id']}: {', '.join(body['features'])}, expires {body['not_after'] or 'never'}")


@command(licence_app, "verify")
def verify(
    path: Annotated[Path, typer.Argument(help="The licence (JSON)")],
    device_cert: Annotated[Path, typer.Option(help="The device's certificate (PEM)")],
    root: Annotated[Path, typer.Option(help="The root CA certificate the device trusts (PEM)")],
    at: Annotated[
        str | None, typer.Option(help="Check as of this time (ISO 8601 with zone, or a date: 00:00 UTC); default now")
    ] = None,
    crl: Annotated[
        Path | None, typer.Option(help="The root's CRL (DER or PEM, /crl/root.crl): refuse a revoked signer's licence")
    ] = None,
) -> None:
    """Check a licence offline as its device does: signer chain to the root, signature, binding, expiry (and,
    with --crl, that its signer was not revoked)."""
    try:
        device = x509.load_pem_x509_certificate(device_cert.read_bytes())
        trusted = x509.load_pem_x509_certificate(root.read_bytes())
        document = path.read_bytes()
        revoked = _crl(crl.read_bytes()) if crl else None
    except (OSError, ValueError) as exc:
        fail(f"cannot read the licence, a certificate or the CRL: {exc}")
    try:
        ok = verify_licence(document, device_certificate=device, root=trusted, now=parse_time(at, "--at"), crl=revoked)
    except LicenceInvalid as exc:
        fail(f"licence REFUSED: {exc.message} [{exc.code}]", code=1)
    console.print(
        f"[green]valid[/]: licence {ok.licence_id} for {ok.serial} ({ok.product_id}): {', '.join(ok.features)}; "
        f"expires {ok.not_after.isoformat() if ok.not_after else 'never'}"
    )


def _crl(data: bytes) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)


@command(licence_app, "signers")
def signers(product: Annotated[str, typer.Argument(help="The product")], json_out: JsonOption = False) -> None:
    """A product's licence signers, oldest first: which signs now, which retired, which were revoked, which
    waits for an offline root's ceremony (pending)."""
    pid = ProductId.named(product)
    rows = through(
        lambda inst: licences.signers(inst, pid), lambda api: api.get(f"/api/v1/products/{pid.value}/licence-signers")
    )
    if json_out:
        print_json(rows)
        return
    table = Table("generation", "state", "certificate serial", "valid until", "since")
    for r in rows:
        cert = (r["certificate_serial"] or "-", r["not_after"] or "-")  # a pending signer has no certificate yet
        table.add_row(str(r["generation"]), r["state"], *cert, r["created_at"])
    console.print(table)


@command(licence_app, "rotate-signer")
def rotate_signer(product: Annotated[str, typer.Argument(help="The product")]) -> None:
    """Give the product a new licence signer: it signs from now on; the older ones retire and the licences
    they signed stay valid (revoke a signer to end those)."""
    pid = ProductId.named(product)

    def local(inst: Instance) -> int:
        return licences.rotate_signer(inst, pid, actor=actor(inst)).generation

    generation = through(
        local, lambda api: int(api.post(f"/api/v1/products/{pid.value}/licence-signers/rotate", {})["generation"])
    )
    console.print(f"Licence signer {generation} of {product} signs from now on; earlier signers retired")


@command(licence_app, "revoke-signer")
def revoke_signer(
    product: Annotated[str, typer.Argument(help="The product")],
    generation: Annotated[int, typer.Argument(help="Which signer ('fabguard licence signers PRODUCT')")],
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help="RFC 5280 reason")] = "key_compromise",
) -> None:
    """Ask for a licence signer to be put on the root's CRL (devices that check it refuse its licences):
    carried out when a second person approves ('fabguard approval approve ID')."""
    pid = ProductId.named(product)

    def local(inst: Instance) -> int:
        act = LicenceSignerRevocation(generation, reason, note)
        return requests.request(inst, pid.value, act, by=requester(inst)).id

    path = f"/api/v1/products/{pid.value}/licence-signers/{generation}/revoke"
    asked = through(local, lambda api: int(api.post(path, {"reason": reason, "note": note})["id"]))
    console.print(f"Request {asked} to revoke licence signer {generation} of {product}: a second person approves it")
