"""``fabguard token ...``: the API tokens people and scripts sign in with."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import actor, command, console, opened
from fabguard.domain.values import Role
from fabguard.service import tokens

token_app = typer.Typer(help="API tokens (admin, engineer, approver, auditor).", no_args_is_help=True)


@command(token_app, "create")
def token_create(
    name: Annotated[str, typer.Option(help="Who holds it")],
    role: Annotated[Role, typer.Option(help="What it may do")],
) -> None:
    """Make an API token; it is printed once."""
    with opened() as inst:
        made, secret = tokens.create_token(inst, name=name, role=role, actor=actor(inst))
    console.print(f"Token {made.id} for {made.name} ({made.role.value}):\n[bold]{secret}[/]")


@command(token_app, "list")
def token_list() -> None:
    """The tokens made so far, revoked ones included (only their hashes are kept, never the secrets)."""
    with opened() as inst:
        rows = tokens.list_tokens(inst)
    table = Table("id", "name", "role", "created", "revoked")
    for t in rows:
        table.add_row(
            t.id,
            t.name,
            t.role,
            t.created_at.isoformat(timespec="seconds"),
            t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "",
        )
    console.print(table)


@command(token_app, "revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (see 'fabguard token list')")]) -> None:
    """Revoke a token: every later request with it is refused."""
    with opened() as inst:
        tokens.revoke_token(inst, token_id, actor=actor(inst))
    console.print(f"Token {token_id} revoked")
