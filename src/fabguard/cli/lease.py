"""``fabguard lease ...``: quota leases for offline site agents (the central server's side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import actor, command, console, opened, print_json, requester
from fabguard.cli.remote import through
from fabguard.cli.tokens import parse_lifetime
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import OrderId
from fabguard.service.agent import lease_close, quota_leases, sync
from fabguard.service.agent.agent_request import parse_agent_request
from fabguard.service.agent.lease_acts import LeaseIssue
from fabguard.service.approvals import requests

lease_app = typer.Typer(
    help="Quota leases: N units of an order, until a time, for one offline site agent.", no_args_is_help=True
)


@command(lease_app, "issue")
def lease_issue(
    order: Annotated[str, typer.Option("--order", help="The order the units come from")],
    units: Annotated[int, typer.Option("--units", help="How many units the agent may provision")],
    request: Annotated[
        Path, typer.Option("--request", help="The agent's request file ('fabguard agent prepare --out')")
    ],
    expires_in: Annotated[
        str,
        typer.Option(
            "--expires-in", help=f"How long the lease lasts: 8h, 3d, 30m (at most {quota_leases.MAX_LEASE_DAYS}d)"
        ),
    ] = "24h",
) -> None:
    """Ask for a lease of units of an order for a site agent; a second person approves it.

    The lease certifies the agent's CA under the root, so it is under dual control: once a second person
    runs 'fabguard approval approve ID', the units leave the order's quota (the server and the agent
    together never issue more than it) and 'fabguard lease bundle LEASE --out FILE' writes the bundle.
    """
    try:
        lifetime = parse_lifetime(expires_in)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, code="invalid_time") from None
    assert lifetime is not None
    try:
        text = request.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read the agent request {request}: {exc}", code="agent_request_invalid") from None
    with opened() as inst:
        pending = requests.request(
            inst,
            OrderId.named(order).value,
            LeaseIssue.of(units, lifetime, parse_agent_request(text)),
            by=requester(inst),
        )
    console.print(
        f"Request {pending.id} to {pending.summary} ({units} units of order {order}) waits for a second person "
        f"until {pending.expires_at.isoformat(timespec='seconds')}: 'fabguard approval approve {pending.id}' with "
        "an approver's token, then 'fabguard lease bundle LEASE --out FILE'"
    )


@command(lease_app, "bundle")
def lease_bundle(
    lease: Annotated[str, typer.Argument(help="The lease (its id: 'fabguard lease list', or the approval's result)")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed lease bundle")],
) -> None:
    """Write an issued lease's signed bundle, for 'fabguard agent init --lease' at the site."""
    with opened() as inst:
        bundle = quota_leases.lease_bundle(inst, lease)
    out.write_text(json.dumps(bundle, indent=2))
    terms = bundle["lease"]
    assert isinstance(terms, dict)
    console.print(
        f"[green]Lease {terms['lease_id']}[/]: {terms['units']} units of order {terms['order_id']} until "
        f"{terms['not_after']}, written to {out}"
    )


@command(lease_app, "list")
def lease_list(
    order: Annotated[str | None, typer.Option("--order", help="Only this order's leases")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The leases issued: order, site, units, the units the agent's synced log made, the units returned to the
    order once closed, the last sync, the end and the state."""
    rows: list[dict[str, Any]] = through(
        lambda inst: quota_leases.list_leases(inst, order_id=order),
        lambda api: api.get("/api/v1/leases", order_id=order),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("lease", "order", "site", "units", "made", "returned", "last sync", "not after", "state")
    for r in rows:
        returned = str(r["units"] - r["units_synced"]) if r["state"] == "closed" else "-"
        state = f"{r['state']}: {r['discrepancy']}" if r["discrepancy"] else str(r["state"])
        cells = (r["id"], r["order_id"], r["site_id"], r["units"], r["units_synced"], returned)
        table.add_row(*(str(c) for c in cells), str(r["synced_at"] or "never"), str(r["not_after"]), state)
    console.print(table)


@command(lease_app, "sync")
def lease_sync_cmd(
    package: Annotated[Path, typer.Argument(help="The file 'fabguard agent sync --out' wrote")],
) -> None:
    """Fold a site agent's log into the ledger (a discrepancy is refused, recorded and alerted)."""
    with opened() as inst:
        summary = sync.sync_lease(inst, sync.parse_sync_package(package.read_bytes()), actor=actor(inst))
    print_json(summary)


@command(lease_app, "resolve")
def lease_resolve(
    lease_id: Annotated[str, typer.Argument(help="The lease whose discrepancy was looked into")],
    note: Annotated[str, typer.Option("--note", help="What was found and done")],
) -> None:
    """Close a lease's discrepancy: new leases for its order and site are issued again."""
    with opened() as inst:
        print_json(sync.resolve_discrepancy(inst, lease_id, note=note, actor=actor(inst)))


@command(lease_app, "close")
def lease_close_cmd(
    lease_id: Annotated[str, typer.Argument(help="The lease whose agent's final log is synced")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Close a lease: the units its agent did not make go back to the order's quota.

    Allowed once the agent's final log is synced: 'fabguard agent finish' then 'fabguard agent sync' at the
    site, or a sync after the lease ended (else lease_not_final). The order's used units decrease by exactly
    the units not made, a lease.closed event records leased, made and returned, and every later sync of the
    lease is refused and alerted (lease_closed): what its agent signs after its final sync is never genuine.
    Closing a closed lease changes nothing and prints its close's figures again.
    """
    closed: dict[str, Any] = through(
        lambda inst: lease_close.close_lease(inst, lease_id, actor=actor(inst)),
        lambda api: api.post(f"/api/v1/leases/{lease_id}/close"),
    )
    if as_json:
        print_json(closed)
        return
    when = "was closed before" if closed.get("already") else "closed"
    console.print(
        f"[green]Lease {closed['lease_id']} {when}[/]: {closed['made']} of {closed['leased']} units made, "
        f"{closed['returned']} returned to order {closed['order_id']} (now {closed['order_used']} of "
        f"{closed['order_quota']} used)"
    )
