"""``fabguard approval ...``: the dual-control requests waiting for a second person, and the decision."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import approver, command, console, opened, print_json
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The requests in a state (by default those still waiting), oldest first."""
    with opened() as inst:
        views = requests.list_approvals(inst, state)
    if as_json:
        print_json([v.to_dict() for v in views])
        return
    table = Table("id", "act", "target", "requested by", "expires", "state", "decided by")
    for v in views:
        table.add_row(
            str(v.id),
            v.summary,
            v.target,
            v.requested_by,
            v.expires_at.isoformat(timespec="seconds"),
            v.state,
            v.decided_by or "",
        )
    console.print(table)


@command(approval_app, "approve")
def approval_approve(approval_id: ApprovalId) -> None:
    """Approve a request and carry out its act (an approver's token in FABGUARD_TOKEN, not the requester's)."""
    with opened() as inst:
        view = requests.decide(inst, approval_id, approve=True, by=approver(inst))
    console.print(f"Request {view.id} approved: {view.summary} ({view.target}) done")


@command(approval_app, "reject")
def approval_reject(approval_id: ApprovalId) -> None:
    """Reject a request: nothing is done (an approver's token in FABGUARD_TOKEN, not the requester's)."""
    with opened() as inst:
        view = requests.decide(inst, approval_id, approve=False, by=approver(inst))
    console.print(f"Request {view.id} rejected: {view.summary} ({view.target}) not done")
