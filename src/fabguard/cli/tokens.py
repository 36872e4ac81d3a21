"""``fabguard token ...``: the API tokens people and scripts sign in with."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import JsonOption, actor, command, console, opened, print_json
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import Role, SiteId
from fabguard.service.access import people, tokens

token_app = typer.Typer(
    help="API tokens (admin, engineer, approver, auditor, operator, field, metrics): named, scoped, expiring, revocable.",
    no_args_is_help=True,
)

_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_lifetime(value: str | None) -> timedelta | None:
    """``90d``, ``12h``, ``30m`` or a bare number of days."""
    if value is None:
        return None
    found = re.fullmatch(r"(\d{1,6})([dhm]?)", value.strip())
    if not found:
        raise InvalidRequest(
            f"--expires-in {value!r} is not a duration like 90d, 12h or 30m", code="token_expiry_invalid"
        )
    return timedelta(**{_UNITS[found.group(2) or "d"]: int(found.group(1))})


@command(token_app, "create")
def token_create(
    role: Annotated[Role, typer.Option(help="What it may do (docs/roles.md): a role its person holds")],
    person: Annotated[
        str | None,
        typer.Option(
            help="The person it belongs to (id or name, see 'fabguard person list'); default: the one named --name"
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="A label for it (a laptop, a script); without --person, the person's name (made if new)"),
    ] = None,
    site: Annotated[
        str | None, typer.Option(help="The one site an operator token sees: required for operator, refused otherwise")
    ] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(
            help=f"How long it works: 90d, 12h, 30m (default {tokens.DEFAULT_LIFETIME.days}d, "
            f"at most {tokens.MAX_LIFETIME.days}d; a metrics token's {tokens.METRICS_MAX_LIFETIME.days}d)"
        ),
    ] = None,
) -> None:
    """Make a person's API token; it is printed once, and only its hash is kept."""
    lifetime = parse_lifetime(expires_in)
    with opened() as inst:
        if name is None:
            if person is None:
                raise InvalidRequest("name the token's --person (or a --name for a new person)", code="person_invalid")
            name = people.get_person(inst, person).name
        made, secret = tokens.create_token(
            inst,
            name=name,
            role=role,
            actor=actor(inst),
            site_id=SiteId.named(site) if site is not None else None,
            expires_in=lifetime,
            person=person,
        )
    scope = f" at site {made.site_id}" if made.site_id else ""
    until = made.expires_at.isoformat(timespec="seconds") if made.expires_at else "never"
    console.print(
        f"Token {made.id} ({made.name}) of {made.person_name} ({made.role.value}{scope}), expires {until}:\n[bold]{secret}[/]"
    )


@command(token_app, "list")
def token_list(as_json: JsonOption = False) -> None:
    """The tokens made so far, revoked ones included (only their hashes are kept, never the secrets)."""
    with opened() as inst:
        rows = tokens.list_tokens(inst)
    if as_json:  # the fields of a token in GET /api/v1/people/{id}, with its holder
        print_json(
            [
                {
                    "id": t.id,
                    "name": t.name,
                    "person_id": t.person_id,
                    "role": t.role,
                    "site_id": t.site_id,
                    "created_at": t.created_at.isoformat(),
                    "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                    "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                    "made_by_person": t.made_by_person,
                }
                for t in rows
            ]
        )
        return
    table = Table("id", "name", "person", "role", "site", "created", "expires", "revoked")
    for t in rows:
        table.add_row(
            t.id,
            t.name,
            t.person_id,
            t.role,
            t.site_id or "",
            t.created_at.isoformat(timespec="seconds"),
            t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never",
            t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "",
        )
    console.print(table)


@command(token_app, "revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (see 'fabguard token list')")]) -> None:
    """Revoke a token: every later request with it is refused."""
    with opened() as inst:
        tokens.revoke_token(inst, token_id, actor=actor(inst))
    console.print(f"Token {token_id} revoked")
