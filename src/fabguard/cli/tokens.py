"""``fabguard token ...``: the API tokens people and scripts sign in with."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import Instance, JsonOption, actor, command, console, print_json
from fabguard.cli.remote import Remote, through
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
    """Make a person's API token; it is printed once, and only its hash is kept. Through --server (an admin's
    token), an admin token or an approving token for someone else waits for a second person."""
    lifetime = parse_lifetime(expires_in)

    def local(inst: Instance) -> dict[str, Any]:
        label = name if name is not None else people.get_person(inst, _named(person)).name
        made, secret = tokens.create_token(
            inst,
            name=label,
            role=role,
            actor=actor(inst),
            site_id=SiteId.named(site) if site is not None else None,
            expires_in=lifetime,
            person=person,
        )
        return {
            "id": made.id,
            "name": made.name,
            "role": made.role.value,
            "site_id": made.site_id,
            "person_name": made.person_name,
            "expires_at": made.expires_at.isoformat() if made.expires_at else None,
            "token": secret,
        }

    def on_server(api: Remote) -> dict[str, Any]:
        days = None
        if lifetime is not None:
            if lifetime % timedelta(days=1):
                raise InvalidRequest(
                    "through --server, --expires-in is in whole days (90d)", code="token_expiry_invalid"
                )
            days = lifetime.days
        body = {"person": person or _named(name), "name": name, "role": role.value, "site_id": site}
        made: dict[str, Any] = api.post("/api/v1/tokens", {**body, "expires_in_days": days})
        return made

    made = through(local, on_server)
    if made.get("state") == "pending":  # through the API: an admin token waits for a second person
        console.print(
            f"Request {made['id']} for this token waits for a second person (fabguard approval approve "
            f"{made['id']}); the token works once approved:\n[bold]{made['token']}[/]"
        )
        return
    scope = f" at site {made['site_id']}" if made["site_id"] else ""
    until = made["expires_at"][:19] + "+00:00" if made["expires_at"] else "never"
    holder = made.get("person_name") or made.get("person_id")
    console.print(f"Token {made['id']} ({made['name']}) of {holder} ({made['role']}{scope}), expires {until}:")
    console.print(f"[bold]{made['token']}[/]")


def _named(who: str | None) -> str:
    if who is None:
        raise InvalidRequest("name the token's --person (or a --name for a new person)", code="person_invalid")
    return who


@command(token_app, "list")
def token_list(as_json: JsonOption = False) -> None:
    """The tokens made so far, revoked ones included (only their hashes are kept, never the secrets)."""
    rows: list[dict[str, Any]] = through(
        lambda inst: [tokens.token_dict(t) for t in tokens.list_tokens(inst)], lambda api: api.get("/api/v1/tokens")
    )
    if as_json:  # the fields of a token in GET /api/v1/people/{id}, with its holder
        print_json(rows)
        return
    table = Table("id", "name", "person", "role", "site", "created", "expires", "revoked")
    for t in rows:
        table.add_row(
            t["id"],
            t["name"],
            t["person_id"],
            t["role"],
            t["site_id"] or "",
            t["created_at"][:19],
            t["expires_at"][:19] if t["expires_at"] else "never",
            t["revoked_at"][:19] if t["revoked_at"] else "",
        )
    console.print(table)


@command(token_app, "revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (see 'fabguard token list')")]) -> None:
    """Revoke a token: every later request with it is refused."""
    through(
        lambda inst: tokens.revoke_token(inst, token_id, actor=actor(inst)),
        lambda api: api.post(f"/api/v1/tokens/{token_id}/revoke"),
    )
    console.print(f"Token {token_id} revoked")
