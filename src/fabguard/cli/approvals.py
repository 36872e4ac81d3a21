"""``fabguard approval ...``: the dual-control requests waiting for a second person, and the decision."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import JsonOption, approver, command, console, print_json
from fabguard.cli.remote import through
from fabguard.service.agent import lease_acts
from fabguard.service.approvals import person_acts, requests
from fabguard.service.authority import ca_acts
from fabguard.service.catalog import order_acts
from fabguard.service.royalties import licence_acts

# Each slice registers the acts it carries out when its module is imported: all of them, so that any
# stored request can be listed and decided here.
ACT_MODULES = (ca_acts, lease_acts, licence_acts, order_acts, person_acts)

approval_app = typer.Typer(
    help="Dual control: admin tokens, resuming orders and CA changes wait here for a second person (an approver).",
    no_args_is_help=True,
)

ApprovalId = Annotated[int, typer.Argument(help="The request's number (see 'fabguard approval list')")]


@command(approval_app, "list")
def approval_list(
    state: Annotated[str, typer.Option(help="pending, approved, rejected or expired")] = "pending",
    as_json: JsonOption = False,
) -> None:
    """The requests in a state (by default those still waiting), oldest first."""
    views: list[dict[str, Any]] = through(
        lambda inst: [v.to_dict() for v in requests.list_approvals(inst, state)],
        lambda api: api.get("/api/v1/approvals", state=state),
    )
    _show(views, as_json)


def _show(views: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(views)
        return
    table = Table("id", "act", "target", "requested by", "expires", "state", "decided by")
    for v in views:
        table.add_row(
            str(v["id"]),
            v["summary"],
            v["target"],
            v["requested_by"],
            v["expires_at"][:19],
            v["state"],
            v["decided_by"] or "",
        )
    console.print(table)


@command(approval_app, "show")
def approval_show(approval_id: ApprovalId, as_json: JsonOption = False) -> None:
    """One request, whatever its state, and (once approved) what its act did."""
    view = through(
        lambda inst: requests.get_approval(inst, approval_id).to_dict(),
        lambda api: api.get(f"/api/v1/approvals/{approval_id}"),
    )
    if as_json:
        print_json(view)
    else:
        _show([view], False)


def _decide(approval_id: int, approve: bool) -> dict[str, Any]:
    verb = "approve" if approve else "reject"
    return through(
        lambda inst: requests.decide(inst, approval_id, approve=approve, by=approver(inst)).to_dict(),
        lambda api: api.post(f"/api/v1/approvals/{approval_id}/{verb}"),
    )


@command(approval_app, "approve")
def approval_approve(approval_id: ApprovalId, as_json: JsonOption = False) -> None:
    """Approve a request and carry out its act (an approver's token in FABGUARD_TOKEN, not the requester's); says
    what the act made (a lease's id, for one)."""
    view = _decide(approval_id, True)
    if as_json:
        print_json(view)
        return
    console.print(
        f"Request {view['id']} approved: {view['summary']} ({view['target']}) done{_made(view)}", soft_wrap=True
    )


def _made(view: dict[str, Any]) -> str:
    """What the approved act made, for the line that says it was done: a lease's id and terms, for one."""
    result = view.get("result") or {}
    if "lease_id" in result:
        return (
            f": lease {result['lease_id']}, {result.get('units')} units until {result.get('not_after')} "
            f"(fabguard lease bundle {result['lease_id']} --out lease.json)"
        )
    return ""


@command(approval_app, "reject")
def approval_reject(approval_id: ApprovalId) -> None:
    """Reject a request: nothing is done (an approver's token in FABGUARD_TOKEN, not the requester's)."""
    view = _decide(approval_id, False)
    console.print(f"Request {view['id']} rejected: {view['summary']} ({view['target']}) not done")
