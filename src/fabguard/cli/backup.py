"""``fabguard backup`` (of a running instance) and ``fabguard restore`` (into a new home): top-level
commands, registered by ``cli.main``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fabguard.cli.common import Instance, console, state
from fabguard.service.operations import backup as backups
from fabguard.service.operations import restore as restores


def backup(
    out: Annotated[Path, typer.Option("--out", help="New directory to write the backup into")],
) -> None:
    """Back up the instance while it runs: a consistent copy of its database (SQLite online backup, or
    pg_dump), its configuration, certificates and encrypted keys as they are, and a manifest with the
    SHA-256 of every file. Needs no passphrase."""
    # Not migrated, nor refused when behind the code: a backup copies the database as the server has it
    # (the step before 'fabguard db upgrade'), and writes nothing to it.
    inst = Instance.open(state.home, check_schema=False)
    try:
        manifest = backups.backup(inst, out)
    finally:
        inst.close()
    ledger = manifest["ledger"]
    console.print(
        f"Backed up {state.home} ({manifest['engine']}) to {out}: {ledger['event_count']} ledger events, "
        f"{manifest['units']} units, {len(manifest['files'])} files; ledger root {ledger['root']}"
    )


def restore(
    directory: Annotated[Path, typer.Argument(help="A directory made by 'fabguard backup'")],
    home: Annotated[Path, typer.Option("--home", help="The new instance directory (must not exist or be empty)")],
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="For a PostgreSQL backup: an empty database to restore into (postgresql+psycopg://...)",
        ),
    ] = None,
) -> None:
    """Restore a backup into a new home, after checking every file against the manifest (a backup that
    does not match is refused and nothing is written). Never overwrites an instance."""
    done = restores.restore(directory, home.expanduser(), database_url=database_url)
    console.print(
        f"Restored {directory} into {done.home} ({done.engine}): {done.event_count} ledger events, "
        f"{done.units} units. Units issued after the backup are unknown here: see 'Backup and restore' in the documentation (docs/howto/backup-restore.md)."
    )
