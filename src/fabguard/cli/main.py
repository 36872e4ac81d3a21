"""``fabguard``: the root command, its global options, and the command groups of the modules beside this one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fabguard import __version__
from fabguard.cli import (
    agent,
    approvals,
    audit,
    backup,
    ca,
    catalog,
    ceremony,
    compliance,
    config,
    db,
    demo,
    doctor,
    events,
    field,
    firmware,
    fixtures,
    handoff,
    instance,
    lease,
    ledger,
    licence,
    orders,
    people,
    royalty,
    stats,
    tokens,
    units,
    witness,
)
from fabguard.cli.common import HOME_ENV, command, console, fail, needs_instance, state
from fabguard.cli.remote import CA_ENV, SERVER_ENV
from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV

app = typer.Typer(
    help=(
        "FabGuard: quota-bound, test-gated device identity for contract manufacturing.\n\n"
        f"Every command works on one instance directory: --home, else ${HOME_ENV}, else "
        f"~/.local/share/fabguard. CA keys are encrypted with the passphrase in ${PASSPHRASE_ENV} "
        f"(or the file named by ${PASSPHRASE_FILE_ENV}).\n\n"
        f"From a workstation: --server URL (or ${SERVER_ENV}) with an API token in $FABGUARD_TOKEN (and --ca, the "
        "server's CA certificate) runs the same commands through the server's REST API; the ledger names the "
        "token's holder. Commands that need the instance directory itself (init, serve, backup, restore, db, "
        "doctor, ...) say so.\n\n"
        "In scripts: every list and show command takes --json; tables never cut a value (one line per row when "
        "stdout is not a terminal). Exit codes: 0 done, 1 a verification or check failed, 2 a usage error, "
        "3 refused (its code in brackets), 4 the database, key store or server is unavailable."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

command(app, "init")(instance.init)
command(app, "serve")(instance.serve)
command(app, "events")(events.events_cmd)
command(app, "demo")(demo.demo)
command(app, "backup")(backup.backup)
command(app, "restore")(backup.restore)
command(app, "doctor")(doctor.doctor)
app.add_typer(tokens.token_app, name="token")
app.add_typer(people.person_app, name="person")
app.add_typer(catalog.product_app, name="product")
app.add_typer(catalog.site_app, name="site")
app.add_typer(orders.order_app, name="order")
app.add_typer(approvals.approval_app, name="approval")
app.add_typer(fixtures.fixture_app, name="fixture")
app.add_typer(units.unit_app, name="unit")
app.add_typer(ca.ca_app, name="ca")
app.add_typer(ledger.ledger_app, name="ledger")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(witness.witness_app, name="witness")
app.add_typer(firmware.firmware_app, name="firmware")
app.add_typer(compliance.compliance_app, name="compliance")
app.add_typer(stats.stats_app, name="stats")
app.add_typer(handoff.handoff_app, name="handoff")
app.add_typer(royalty.royalty_app, name="royalty")
app.add_typer(licence.licence_app, name="licence")
app.add_typer(field.field_app, name="field")
app.add_typer(lease.lease_app, name="lease")
app.add_typer(agent.agent_app, name="agent")
app.add_typer(config.config_app, name="config")
app.add_typer(db.db_app, name="db")
app.add_typer(ceremony.ceremony_app, name="ceremony")


def _version(value: bool) -> None:
    if value:
        console.print(f"fabguard {__version__}")
        raise typer.Exit()


LOCAL_ONLY = frozenset({"init", "serve", "demo", "backup", "restore", "doctor", "db", "config", "agent", "ceremony"})
"""Commands that work on the instance directory itself (or make one): refused at once with --server."""


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", help=f"Instance directory (default: ${HOME_ENV} or ~/.local/share/fabguard)"),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar=SERVER_ENV,
            help="Work on this running server through its REST API (https://host:port), as the holder of the "
            "API token in $FABGUARD_TOKEN, instead of on an instance directory",
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca", envvar=CA_ENV, help="With --server: the CA certificate (PEM) the server's TLS certificate chains to"
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    if home is not None:
        state.home = home.expanduser()
    state.server = server.rstrip("/") if server else None
    state.ca = ca.expanduser() if ca else None
    state.group = ctx.invoked_subcommand
    if state.server is not None and ctx.invoked_subcommand in LOCAL_ONLY:
        error = needs_instance(f"'fabguard {ctx.invoked_subcommand}'")
        fail(f"{error.message} [{error.code}]", error=error.code)


def main() -> None:
    """The ``fabguard`` console script."""
    app()


if __name__ == "__main__":
    main()
