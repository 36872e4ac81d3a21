"""``fabguard person ...``: the people who hold tokens, their roles and their state (docs/roles.md).

Run without ``FABGUARD_TOKEN`` these are the local operator's acts, done at once (whoever runs them
holds the instance's keys anyway); with an admin's token in ``FABGUARD_TOKEN`` (locally, or through
``--server``) they are that person's, and granting approver or admin waits for a second person once two
people have approving tokens.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import TOKEN_ENV, Instance, JsonOption, actor, command, console, print_json, requester
from fabguard.cli.remote import through
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


Said = dict[str, Any]  # a person as the API answers (PersonView.to_dict), with its pending_approval if any


def _answer(person: people.PersonView, pending: requests.ApprovalView | None) -> Said:
    return {**person.to_dict(), "pending_approval": pending.to_dict() if pending else None}


def _said(person: Said) -> None:
    roles = ", ".join(person["roles"]) or "no role"
    site = f" at site {person['site_id']}" if person["site_id"] else ""
    console.print(f"{person['name']} ({person['id']}): {roles}{site}")
    pending = person.get("pending_approval")
    if pending:
        waiting = ", ".join(pending["parameters"]["roles"])
        console.print(
            f"Request {pending['id']} to grant {waiting} waits for a second person: "
            f"fabguard approval approve {pending['id']}"
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
    body = {"name": name, "contact": contact, "roles": [r.value for r in role or ()], "site_id": site}
    _said(
        through(
            lambda inst: _answer(*person_acts.add_person(inst, spec, by=_by(inst))),
            lambda api: api.post("/api/v1/people", body),
        )
    )


@command(person_app, "list")
def person_list(as_json: JsonOption = False) -> None:
    """Everyone, suspended people included."""
    views: list[dict[str, Any]] = through(
        lambda inst: [v.to_dict() for v in people.list_people(inst)], lambda api: api.get("/api/v1/people")
    )
    if as_json:
        print_json(views)
        return
    table = Table("id", "name", "roles", "site", "state", "contact")
    for v in views:
        table.add_row(v["id"], v["name"], ", ".join(v["roles"]), v["site_id"] or "", v["state"], v["contact"])
    console.print(table)


@command(person_app, "show")
def person_show(person: PersonRef, as_json: JsonOption = False) -> None:  # JSON either way
    """One person and their tokens (never a secret), as JSON (``--json`` is accepted, like every show)."""
    print_json(
        through(
            lambda inst: {**people.get_person(inst, person).to_dict(), "tokens": people.tokens_of(inst, person)},
            lambda api: api.get(f"/api/v1/people/{person}"),
        )
    )


@command(person_app, "grant")
def person_grant(
    person: PersonRef,
    role: Annotated[Role, typer.Argument(help="The role to grant")],
    site: Annotated[str | None, typer.Option(help="The site, when granting operator")] = None,
) -> None:
    """Grant a role; approver or admin may wait for a second person."""
    _said(
        through(
            lambda inst: _answer(*person_acts.grant_roles(inst, person, frozenset({role}), site_id=site, by=_by(inst))),
            lambda api: api.post(f"/api/v1/people/{person}/grant", {"role": role.value, "site_id": site}),
        )
    )


@command(person_app, "revoke")
def person_revoke(person: PersonRef, role: Annotated[Role, typer.Argument(help="The role to take away")]) -> None:
    """Take a role away: their tokens of that role are refused from now on."""
    _said(
        through(
            lambda inst: _answer(people.revoke_role(inst, person, role, actor=actor(inst)), None),
            lambda api: api.post(f"/api/v1/people/{person}/revoke", {"role": role.value}),
        )
    )


@command(person_app, "suspend")
def person_suspend(person: PersonRef, reason: Annotated[str, typer.Option(help="Why (kept in the ledger)")]) -> None:
    """Suspend a person: every token of theirs is refused from now on."""
    view = through(
        lambda inst: people.suspend_person(inst, person, reason=reason, actor=actor(inst)).to_dict(),
        lambda api: api.post(f"/api/v1/people/{person}/suspend", {"reason": reason}),
    )
    console.print(f"{view['name']} ({view['id']}) suspended: their tokens are refused")
