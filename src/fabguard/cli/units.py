"""``fabguard unit ...``: provisioned units, one at a time (a whole order's: ``fabguard order revoke-units``):
list, find (by serial or what a unit shows in the field), show (its genealogy), revoke."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from fabguard.cli.common import REASON_HELP, JsonOption, actor, command, console, print_json
from fabguard.cli.remote import through
from fabguard.service.authority import revocation
from fabguard.service.genealogy import unit_history, unit_pdf
from fabguard.service.provisioning import units

unit_app = typer.Typer(help="Provisioned units: list, find, show, revoke.", no_args_is_help=True)


@command(unit_app, "list")
def unit_list(
    order: Annotated[str | None, typer.Option(help="Only this order's units")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product's units")] = None,
    limit: Annotated[int, typer.Option(help=f"At most this many, newest first (1-{units.MAX_LIST})")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Provisioned units, newest first: serial, product, order, issuing CA, certificate serial, state."""
    rows: list[dict[str, Any]] = through(
        lambda inst: [u.to_dict() for u in units.list_units(inst, order_id=order, product_id=product, limit=limit)],
        lambda api: api.get("/api/v1/units", order_id=order, product_id=product, limit=limit),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("serial", "product", "order", "issuing CA", "cert serial", "issued", "state")
    for u in rows:
        state = f"revoked ({u['revocation_reason']})" if u["revoked_at"] else "active"
        table.add_row(
            u["serial"], u["product_id"], u["order_id"], u["issuing_ca"], u["cert_serial"], u["issued_at"], state
        )
    console.print(table)
    console.print(f"{len(rows)} units" + (" (the newest; raise --limit for more)" if len(rows) == limit else ""))


@command(unit_app, "revoke")
def unit_revoke(
    serial: Annotated[str, typer.Argument(help="The unit's serial")],
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "unspecified",
    product: Annotated[str | None, typer.Option(help="Product, if the serial exists in several")] = None,
) -> None:
    """Revoke a unit's certificate; its serial can never be provisioned again."""
    done = through(
        lambda inst: revocation.revoke_unit(
            inst, serial, reason_code=reason, note=note, actor=actor(inst), product_id=product
        ),
        lambda api: api.post(f"/api/v1/units/{serial}/revoke", {"reason": reason, "note": note, "product_id": product}),
    )
    crl = (
        "the issuing CA's CRL is updated"
        if done.get("crl_updated", True)
        else "its CA is a site agent's, whose CRL this server does not sign: field checks here say revoked"
    )
    console.print(f"Unit {serial} revoked (certificate {done['cert_serial']}); {crl}")


@command(unit_app, "find")
def unit_find(
    query: Annotated[
        str,
        typer.Argument(
            help="A serial or its first characters, a MAC address, a certificate's serial number or SHA-256 "
            "fingerprint, or a key's fingerprint (hex, any case, with or without ':', '-', '.' or spaces)"
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Find units: by serial or its start, or by what a unit back from the field shows (a MAC address from its
    label, its certificate as 'openssl x509 -serial' or '-fingerprint -sha256' prints it, its key's fingerprint).
    Exact matches first; at most 50."""
    found: dict[str, Any] = through(
        lambda inst: {"query": query, "serials": unit_history.search(inst, query)},
        lambda api: api.get("/api/v1/units/search", q=query),
    )
    if as_json:
        print_json(found)
        return
    for serial in found["serials"]:
        console.print(serial, markup=False, highlight=False)
    if not found["serials"]:
        console.print(f"No unit starts with {query!r} or shows it as its MAC address, certificate or key.")


@command(unit_app, "show")
def unit_show(
    serial: Annotated[str, typer.Argument(help="The unit's serial ('fabguard unit find' finds it)")],
    pdf: Annotated[Path | None, typer.Option(help="Also write the genealogy as a PDF to this file")] = None,
    as_json: JsonOption = False,
) -> None:
    """A unit's genealogy: its certificates and who made it, test records, decisions and refusals, field checks,
    identities and ledger entries (with --json: all of it, each entry with its inclusion proof)."""
    g: dict[str, Any] = through(
        lambda inst: unit_history.genealogy(inst, serial),
        lambda api: api.get(f"/api/v1/units/{quote(serial, safe='')}/genealogy"),
    )
    if pdf is not None:
        buffer = io.BytesIO()
        through(
            lambda inst: buffer.write(unit_pdf.to_pdf(g, inst.config.organization)),
            lambda api: api.download("GET", f"/api/v1/units/{quote(serial, safe='')}/genealogy.pdf", buffer),
        )
        pdf.write_bytes(buffer.getvalue())
    if as_json:
        print_json(g)
        return
    for line in genealogy_lines(g):
        console.print(line, markup=False, highlight=False)
    if pdf is not None:
        console.print(f"PDF written to {pdf}", markup=False, highlight=False)


def genealogy_lines(g: dict[str, Any]) -> list[str]:
    """A genealogy in a few lines: what an operations team reads first."""
    lines = [f"Unit {g['serial']}"]
    for u in g["units"]:
        made = u["made_by"]
        by = (
            f"site agent (lease {made['lease_id']})"
            if made["kind"] == "site_agent"
            else f"fixture {made['fixture_id']}"
        )
        cert = u["certificate"]
        state = f"revoked {cert['revoked_at']} ({cert['revocation_reason']})" if cert["revoked_at"] else "active"
        lines += [
            f"  {u['product_id']}: order {u['order_id']} at site {u['site_id']}, made by {by}, issued {u['issued_at']}",
            f"    certificate {cert['serial']} from CA {u['issuing_ca']}, {state}; SHA-256 {cert['sha256']}",
        ]
    for c in g["superseded_certificates"]:
        lines.append(f"  replaced certificate {c['serial']} ({c['product_id']}), superseded {c['superseded_at']}")
    for i in g["identities"]:
        macs = ", ".join(i.get("mac_addresses") or []) or "none"
        lines.append(f"  identities ({i['product_id']}, order {i['order_id']}): MAC {macs}")
    records = g["test_records"]
    newest = records[-1] if records else None
    lines.append(
        f"Test records: {len(records)}"
        + (f"; newest {newest['outcome']} at {newest['received_at']} by {newest['fixture_id']}" if newest else "")
    )
    kinds: dict[str, int] = {}
    for d in g["decisions"]:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    lines.append(f"Decisions: {len(g['decisions'])}" + "".join(f"; {k} {n}" for k, n in sorted(kinds.items())))
    checks = g["field_checks"]
    if checks:
        last = checks[-1]
        verdict = "genuine" if last["genuine"] else f"not genuine ({last['reason']})"
        lines.append(f"Field checks: {len(checks)}; latest {verdict} at {last['place']}, {last['at']}")
    ledger = g["ledger"]
    size = ledger["checkpoint"]["size"] if ledger["checkpoint"] else None
    lines.append(
        f"Ledger: {len(ledger['entries'])} entries"
        + (f", proven against the signed checkpoint of size {size}" if size is not None else ", no checkpoint yet")
    )
    return lines
