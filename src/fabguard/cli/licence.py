"""``fabguard licence ...``: issue a signed feature licence to a unit, and verify one as its device would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509

from fabguard.cli.common import JsonOption, actor, command, console, fail, parse_time, print_json
from fabguard.cli.remote import through
from fabguard.domain.values import ProductId, Serial
from fabguard.fixture.licence import LicenceInvalid, verify_licence
from fabguard.service.royalties import licences

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
) -> None:
    """Check a licence offline as its device does: signer chain to the root, signature, binding, expiry."""
    try:
        device = x509.load_pem_x509_certificate(device_cert.read_bytes())
        trusted = x509.load_pem_x509_certificate(root.read_bytes())
        document = path.read_bytes()
    except (OSError, ValueError) as exc:
        fail(f"cannot read the licence or a certificate: {exc}")
    try:
        ok = verify_licence(document, device_certificate=device, root=trusted, now=parse_time(at, "--at"))
    except LicenceInvalid as exc:
        fail(f"licence REFUSED: {exc.message} [{exc.code}]", code=1)
    console.print(
        f"[green]valid[/]: licence {ok.licence_id} for {ok.serial} ({ok.product_id}): {', '.join(ok.features)}; "
        f"expires {ok.not_after.isoformat() if ok.not_after else 'never'}"
    )
