"""``fabguard db``: where the database's schema stands (``check``) and bringing it to the code's (``upgrade``).

No other command migrates: each refuses a database behind the code with ``database_behind_code``, naming
``fabguard db upgrade`` (or ``fabguard serve --migrate``). docs/operations.md's "Upgrading" is the procedure.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fabguard.cli.common import Instance, command, console, print_json, state
from fabguard.service.core.instance import require_current_schema

db_app = typer.Typer(help="The database's schema: check it against the code, upgrade it.", no_args_is_help=True)

# What 'db check' exits with: scripts run 'fabguard db check || fabguard db upgrade'.
CURRENT, NOT_CURRENT = 0, 1
_ACTION = {
    "current": "nothing to do",
    "behind": "back it up, then run 'fabguard db upgrade' (or 'fabguard serve --migrate')",
    "ahead": "a newer FabGuard upgraded it: run that release (schemas are never downgraded)",
}


def _open() -> Instance:
    # Not checked on opening: reporting (or fixing) a schema that is not the code's is these commands' work.
    return Instance.open(state.home, check_schema=False)


@command(db_app, "check")
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON")] = False,
) -> None:
    """Say whether the database is at this FabGuard's schema revision; exit 0 if it is, 1 if it is behind
    (run 'fabguard db upgrade') or ahead (a newer release upgraded it), 2 if it cannot be checked."""
    inst = _open()
    try:
        status = inst.schema()
    finally:
        inst.close()
    if as_json:
        print_json(
            {
                "database_revision": status.database,
                "code_revision": status.code,
                "state": status.state,
                "action": _ACTION[status.state],
            }
        )
    else:
        at = status.database or "empty (no schema)"
        colour = "green" if status.state == "current" else "yellow"
        console.print(f"database: {at}; code: {status.code}: [{colour}]{status.state}[/] ({_ACTION[status.state]})")
    if status.state != "current":
        raise typer.Exit(NOT_CURRENT)


@command(db_app, "upgrade")
def upgrade() -> None:
    """Bring the database's schema to this FabGuard's revision (back it up first: 'fabguard backup').
    Safe to run twice, and beside running servers of the new release; refuses a database a newer release
    upgraded."""
    inst = _open()
    try:
        before = inst.schema()
        if before.state == "ahead":
            require_current_schema(inst.db)
        if before.state == "current":
            console.print(f"The database is already at revision {before.code}: nothing to do.")
            return
        inst.upgrade()
        after = require_current_schema(inst.db)
    finally:
        inst.close()
    console.print(f"Upgraded the database from revision {before.database or '(empty)'} to {after.code}.")


__all__ = ["db_app"]
