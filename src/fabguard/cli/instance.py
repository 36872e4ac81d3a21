"""``fabguard init`` makes an instance directory; ``fabguard serve`` runs the HTTPS server on it.

Both are top-level commands: ``cli.main`` registers them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fabguard import __version__
from fabguard.cli.common import console, init_instance, opened, state
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import Role
from fabguard.runtime import tune_gc
from fabguard.service import tokens


def init(
    org: Annotated[str, typer.Option("--org", help="Organisation name written into certificate subjects")],
    hostname: Annotated[
        list[str] | None, typer.Option("--hostname", help="Server name for its TLS certificate (repeatable)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="PostgreSQL URL (postgresql+psycopg://...); default SQLite")
    ] = None,
    crl_url: Annotated[
        str | None, typer.Option("--crl-url", help="Base URL where CRLs are published (default https://HOST:8443/crl)")
    ] = None,
    key_backend: Annotated[
        str, typer.Option("--key-backend", help="Where CA keys live: file (encrypted PKCS#8) or pkcs11 (HSM)")
    ] = "file",
    pkcs11_module: Annotated[
        str | None, typer.Option("--pkcs11-module", help="PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so")
    ] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option("--pkcs11-token", help="Token label (the PIN comes from FABGUARD_PKCS11_PIN[_FILE])")
    ] = None,
) -> None:
    """Create an instance: root, device-issuing and station CAs, a ledger key, the first admin token."""
    hosts = tuple(hostname) if hostname else ("127.0.0.1",)
    init_instance(
        state.home,
        organization=org,
        hostnames=hosts,
        database_url=database_url,
        crl_base_url=crl_url,
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
    )
    with opened() as inst:
        _, secret = tokens.create_token(inst, name="admin", role=Role.ADMIN, actor="init")
    console.print(f"[green]Instance created[/] in {state.home}")
    console.print(f"Admin API token (shown once, only its hash is kept):\n[bold]{secret}[/]")


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port")] = 8443,
    workers: Annotated[int, typer.Option(help="Server processes (use PostgreSQL for more than one)")] = 1,
    log_level: Annotated[
        str, typer.Option(help="Log level of uvicorn and FabGuard: critical, error, warning, info, debug, trace")
    ] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request (credentials redacted)")
    ] = False,
) -> None:
    """Run the HTTPS server (fixtures authenticate with their client certificates).

    Limits on hostile clients come from instance.json's "limits" (README, API): max_body_bytes, max_header_bytes, body_read_seconds, idle_seconds, fixture_requests_per_second, fixture_request_burst.
    """
    if log_level not in LOG_LEVELS:
        raise InvalidRequest(f"unknown log level {log_level[:40]!r}; one of {', '.join(LOG_LEVELS)}")
    # Lazy: the web stack (FastAPI, uvicorn) takes about half a second to import, which no other command needs.
    from fabguard.api.server import run_server, server_config

    tune_gc()
    with opened() as inst:
        if workers > 1 and inst.db.is_sqlite:
            raise typer.BadParameter("several workers need PostgreSQL (init --database-url); SQLite is one process")
        inst.cas.issuer("issuing")  # fail now, not on the first unit, if the passphrase is wrong
        console.print(f"FabGuard {__version__} serving https://{host}:{port} ({workers} worker(s))")
        run_server(
            server_config(inst, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log)
        )
