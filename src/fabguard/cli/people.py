"""``fabguard person ...``: the people who hold tokens, their roles and their state (docs/roles.md).

Run without ``FABGUARD_TOKEN`` these are the local operator's acts, done at once (whoever runs them
holds the instance's keys anyway); with an admin's token in ``FABGUARD_TOKEN`` they are that person's,
and granting approver or admin waits for a second person once two people have approving tokens.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import TOKEN_ENV, Instance, JsonOption, actor, command, console, opened, print_json, requester
from fabguard.domain.values import Role
from fabguard.service.access import people, tokens
from fabguard.service.approvals import person_acts, requests

person_app = typer.Typer(
    help="People: who holds tokens, with which roles (granting approver or admin needs a second person).",
    no_args_is_help=True,
)

PersonRef = Annotated[str, typer.Argument(help="The person's id or name (see 'fabguard person list')")]


def _by(inst: Instance) -> requests.Person:
    """Who acts: the holder of FABGUARD_TOKEN (who must be an admin), else the local operator."""
    if os.environ.get(TOKEN_ENV):
        p = tokens.authenticate_token(inst, os.environ[TOKEN_ENV])
        tokens.require_role(inst, p, Role.ADMIN)
        return requests.Person.of(p)
    return requester(inst)


def _said(person: people.PersonView, pending: requests.ApprovalView | None) -> None:
    roles = ", ".join(r.value for r in person.roles) or "no role"
    console.print(f"{person.name} ({person.id}): {roles}{f' at site {person.site_id}' if person.site_id else ''}")
    if pending is not None:
        waiting = ", ".join(pending.parameters["roles"])
        console.print(
            f"Request {pending.id} to grant {waiting} waits for a second person: fabguard approval approve {pending.id}"
        )


@command(person_app, "add")
def person_add(
    name: Annotated[str, typer.Argument(help="Their name (unique)")],
    role: Annotated[list[Role] | None, typer.Option(help="A role they hold (repeat for more)")] = None,
    contact: Annotated[str, typer.Option(help="How to reach them")] = "",
    site: Annotated[str | None, typer.Option(help="An operator's site (operators only)")] = None,
) -> None:
    """Record a person with their roles."""
    spec = people.person_spec(name, contact=contact, roles=role or (), site_id=site)
    with opened() as inst:
        person, pending = person_acts.add_person(inst, spec, by=_by(inst))
    _said(person, pending)


@command(person_app, "list")
def person_list(as_json: JsonOption = False) -> None:
    """Everyone, suspended people included."""
    with opened() as inst:
        views = people.list_people(inst)
    if as_json:
        print_json([v.to_dict() for v in views])
        return
    table = Table("id", "name", "roles", "site", "state", "contact")
    for v in views:
        table.add_row(v.id, v.name, ", ".join(r.value for r in v.roles), v.site_id or "", v.state, v.contact)
    console.print(table)


@command(person_app, "show")
def person_show(person: PersonRef, as_json: JsonOption = False) -> None:  # JSON either way
    """One person and their tokens (never a secret), as JSON (``--json`` is accepted, like every show)."""
    with opened() as inst:
        print_json({**people.get_person(inst, person).to_dict(), "tokens": people.tokens_of(inst, person)})


@command(person_app, "grant")
def person_grant(
    person: PersonRef,
    role: Annotated[Role, typer.Argument(help="The role to grant")],
    site: Annotated[str | None, typer.Option(help="The site, when granting operator")] = None,
) -> None:
    """Grant a role; approver or admin may wait for a second person."""
    with opened() as inst:
        view, pending = person_acts.grant_roles(inst, person, frozenset({role}), site_id=site, by=_by(inst))
    _said(view, pending)


@command(person_app, "revoke")
def person_revoke(person: PersonRef, role: Annotated[Role, typer.Argument(help="The role to take away")]) -> None:
    """Take a role away: their tokens of that role are refused from now on."""
    with opened() as inst:
        view = people.revoke_role(inst, person, role, actor=actor(inst))
    _said(view, None)


@command(person_app, "suspend")
def person_suspend(person: PersonRef, reason: Annotated[str, typer.Option(help="Why (kept in the ledger)")]) -> None:
    """Suspend a person: every token of theirs is refused from now on."""
    with opened() as inst:
        view = people.suspend_person(inst, person, reason=reason, actor=actor(inst))
    console.print(f"{view.name} ({view.id}) suspended: their tokens are refused")
