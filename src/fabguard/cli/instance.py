"""``fabguard init`` makes an instance directory; ``fabguard serve`` runs the HTTPS server on it.

Both are top-level commands: ``cli.main`` registers them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from fabguard import __version__
from fabguard.cli.common import Instance, actor, console, err_console, init_instance, opened, state
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import Role
from fabguard.pki import ceremony as pki_ceremony
from fabguard.runtime import tune_gc
from fabguard.service.access import tokens
from fabguard.service.authority import ceremony
from fabguard.service.core import published_urls, server_tls

if TYPE_CHECKING:  # the web stack is imported lazily (serve): its types only
    import uvicorn

    from fabguard.api.server import ServerThread

OfflineRoot = Annotated[
    Path | None,
    typer.Option(
        "--offline-root",
        help="Make no root key here: write the CAs' CSRs into this new directory (a ceremony request "
        "bundle) for 'fabguard ceremony sign' on the air-gapped machine (docs/ceremony.md)",
    ),
]
ImportCeremony = Annotated[
    Path | None,
    typer.Option(
        "--import-ceremony",
        help="Finish an instance made with --offline-root: import the signed bundle the ceremony wrote",
    ),
]


TlsCert = Annotated[
    Path | None,
    typer.Option("--tls-cert", help="The HTTPS listener's certificate from your own CA (PEM, leaf then chain)"),
]
TlsKey = Annotated[Path | None, typer.Option("--tls-key", help="Its private key (PEM)")]
TlsKeyPassphrase = Annotated[
    Path | None, typer.Option("--tls-key-passphrase-file", help="File holding that key's passphrase")
]
TlsCa = Annotated[
    Path | None, typer.Option("--tls-ca", help="CA certificate(s) clients trust for it (given to fixtures)")
]


def _operator_tls(
    cert: Path | None, key: Path | None, passphrase_file: Path | None, ca: Path | None
) -> server_tls.OperatorFiles | None:
    """The operator's certificate files for the HTTPS listener, read now: refused before anything is made."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidRequest("--tls-cert and --tls-key go together")
    files = server_tls.OperatorFiles.named(cert, key, passphrase_file, ca)
    server_tls.read_credentials(files)
    return files


def init(
    org: Annotated[
        str | None, typer.Option("--org", help="Organisation name written into certificate subjects (required)")
    ] = None,
    hostname: Annotated[
        list[str] | None, typer.Option("--hostname", help="Server name for its TLS certificate (repeatable)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="PostgreSQL URL (postgresql+psycopg://...); default SQLite")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="The HTTPS API's URL as fixtures reach it (default https://HOST:8443)"),
    ] = None,
    pki_url: Annotated[
        str | None,
        typer.Option(
            "--pki-url",
            help="Plain-HTTP base certificates name for CRLs (<URL>/crl/CA.crl) and CA certificates "
            "(<URL>/ca/CA.crt); serve it with 'serve --http-port' (default http://HOST:8080)",
        ),
    ] = None,
    crl_url: Annotated[
        str | None,
        typer.Option("--crl-url", help="Base URL of the CRLs alone, if not <pki-url>/crl (e.g. http://HOST:8080/crl)"),
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
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_key_passphrase_file: TlsKeyPassphrase = None,
    tls_ca: TlsCa = None,
    offline_root: OfflineRoot = None,
    import_ceremony: ImportCeremony = None,
) -> None:
    """Create an instance: root, device-issuing and station CAs, a ledger key, the first admin token.

    The HTTPS listener serves a certificate made under the station CA, or with --tls-cert and --tls-key
    the operator's (see 'fabguard config tls'). With --offline-root the root's key is never on this machine:
    the instance waits, signing nothing, until 'init --import-ceremony DIR' installs what the ceremony signed."""
    if import_ceremony is not None:
        _import_ceremony(import_ceremony)
        return
    if org is None:
        raise InvalidRequest("init needs --org (or --import-ceremony DIR to finish an offline-root instance)")
    hosts = tuple(hostname) if hostname else ("127.0.0.1",)
    operator_tls = _operator_tls(tls_cert, tls_key, tls_key_passphrase_file, tls_ca)
    if offline_root is not None and offline_root.exists() and any(offline_root.iterdir()):
        raise InvalidRequest(f"{offline_root} is not empty: give a new directory for the ceremony request")
    init_instance(
        state.home,
        organization=org,
        hostnames=hosts,
        database_url=database_url,
        crl_base_url=crl_url,
        public_url=public_url,
        pki_url=pki_url,
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
        offline_root=offline_root is not None,
    )
    if operator_tls is not None:
        server_tls.set_operator_tls(state.home, operator_tls)
    with opened() as inst:
        _, secret = tokens.create_token(inst, name="admin", role=Role.ADMIN, actor="init")
        request = ceremony.request_bundle(inst) if offline_root is not None else None
    if offline_root is not None and request is not None:
        _write_request(offline_root, request)
    console.print(f"[green]Instance created[/] in {state.home}")
    console.print(f"Admin API token (shown once, only its hash is kept):\n[bold]{secret}[/]")


def _import_ceremony(directory: Path) -> None:
    with opened() as inst:
        done = ceremony.import_bundle(inst, pki_ceremony.read_directory(directory), actor=actor(inst))
    console.print(f"[green]Ceremony imported[/] into {state.home}: the instance can serve")
    console.print(f"Root SHA-256 {done.root_fingerprint}; root CRL number {done.crl_number}")


def _write_request(directory: Path, request: dict[str, bytes]) -> None:
    pki_ceremony.write_directory(directory, request)
    console.print(
        f"Ceremony request written to {directory} (manifest SHA-256 {pki_ceremony.manifest_digest(request)}): "
        "sign it with 'fabguard ceremony sign', then 'fabguard init --import-ceremony DIR'"
    )


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")  # api.logs.LOG_FORMATS (the web stack is imported only when serving)
HTTP_STACKS = ("httptools", "h11")  # api.server.STACKS (imported only when serving)
HttpStackOption = Annotated[
    str,
    typer.Option(
        "--http",
        help="HTTP stack: httptools (llhttp on uvloop, the default) or h11 (pure Python on asyncio; "
        "slower, kept for comparison); both carry client certificates and the same limits",
    ),
]


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port")] = 8443,
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port",
            help="Also publish CRLs and CA certificates (nothing else) over plain HTTP on this port, "
            "as certificates name them (instance.json's pki_url)",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Server processes (use PostgreSQL for more than one)")] = 1,
    http: HttpStackOption = "httptools",
    log_level: Annotated[
        str, typer.Option(help="Log level of uvicorn and FabGuard: critical, error, warning, info, debug, trace")
    ] = "info",
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log one line a request on stdout: time, request id, route, status, duration, who, refusal code",
        ),
    ] = True,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="text (for a person) or json (one object a line, for a log collector); "
            "default: text at a terminal, json otherwise",
        ),
    ] = None,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate", help="Upgrade the database's schema first if it is behind the code (as 'fabguard db upgrade')"
        ),
    ] = False,
) -> None:
    """Run the HTTPS server (fixtures authenticate with their client certificates).

    Refuses a database behind the code (database_behind_code): run 'fabguard db upgrade' first, or pass --migrate.

    Limits on hostile clients come from instance.json's "limits" (README, API): max_body_bytes, max_header_bytes, body_read_seconds, idle_seconds, max_connections (per process, within the open-file limit, which serve raises to its hard limit), fixture_requests_per_second, fixture_request_burst.
    """
    chosen_format = _log_format(log_level, log_format)
    stack = _http_stack(http)
    # Lazy: the web stack (FastAPI, uvicorn) takes about half a second to import, which no other command needs.
    from fabguard.api.connections import OpenConnections, connection_limit, raise_open_file_limit
    from fabguard.api.server import ServerThread, publication_config, server_config

    tune_gc()
    raise_open_file_limit()
    with opened(migrate=migrate) as inst:
        if workers > 1 and inst.db.is_sqlite:
            raise typer.BadParameter("several workers need PostgreSQL (init --database-url); SQLite is one process")
        inst.cas.issuer("issuing")  # fail now, not on the first unit, if the passphrase is wrong
        connections = OpenConnections(connection_limit(inst.limits.max_connections))  # this process's listeners
        publication = None
        if http_port is not None:
            made = partial(publication_config, log_level=log_level, log_format=chosen_format)
            publication = ServerThread(
                inst, host=host, port=http_port, config=made, connections=connections, http=stack
            )
        config = server_config(  # configures logging: what serve says from here on is in the log's format
            inst, host=host, port=port, workers=workers, log_level=log_level, log_format=chosen_format,
            access_log=access_log, connections=connections, http=stack,
        )  # fmt: skip
        say = _teller(chosen_format)
        for line in _unserved(inst, host, port, http_port):
            say(logging.WARNING, line)
        served = f"https://{host}:{port}" + (
            f" and http://{host}:{http_port} (CRLs, CA certificates)" * bool(http_port)
        )
        say(logging.INFO, f"FabGuard {__version__} serving {served} ({workers} worker(s), {stack})")
        _run_server(config, publication, workers)


def _run_server(config: uvicorn.Config, publication: ServerThread | None, workers: int) -> None:
    """``run_server``; with several workers, their shared metrics directory made first and named in the
    environment they are spawned with (prometheus_client's multiprocess mode, ``api.multiprocess_metrics``)."""
    # Lazy, as in serve: the web stack's import cost.
    from fabguard.api.multiprocess_metrics import MULTIPROC_ENV, private_metrics_dir
    from fabguard.api.server import run_server

    if workers == 1:
        run_server(config, publication)
        return
    with private_metrics_dir() as metrics_dir:
        os.environ[MULTIPROC_ENV] = str(metrics_dir)  # replaces any the environment had: this run's alone
        run_server(config, publication, metrics_dir=metrics_dir)


def _http_stack(http: str) -> Literal["httptools", "h11"]:
    """The HTTP stack ``serve --http`` names (api.server.Stack)."""
    if http not in HTTP_STACKS:
        raise InvalidRequest(f"unknown HTTP stack {http[:40]!r}; one of {', '.join(HTTP_STACKS)}")
    return "h11" if http == "h11" else "httptools"


def _log_format(log_level: str, log_format: str | None) -> Literal["text", "json"]:
    """The log format serve uses (text or json), after checking both options."""
    if log_level not in LOG_LEVELS:
        raise InvalidRequest(f"unknown log level {log_level[:40]!r}; one of {', '.join(LOG_LEVELS)}")
    if log_format not in (None, *LOG_FORMATS):
        raise InvalidRequest(f"unknown log format {log_format[:40]!r}; one of {', '.join(LOG_FORMATS)}")
    from fabguard.api.logs import default_log_format  # lazy, as in serve

    return default_log_format() if log_format is None else "json" if log_format == "json" else "text"


def _teller(log_format: str) -> Callable[[int, str], None]:
    """How serve tells the operator something: as text on the console, or with ``--log-format json`` as a
    log record, so that every line of a JSON server's output is one JSON object."""

    def tell(level: int, line: str) -> None:
        if log_format == "json":
            logging.getLogger("fabguard.serve").log(level, "%s", line)
        elif level >= logging.WARNING:
            err_console.print(f"[yellow]warning:[/] {escape(line)}")
        else:
            console.print(line)

    return tell


def _unserved(inst: Instance, host: str, port: int, http_port: int | None) -> list[str]:
    """One line for each published URL that this server does not serve (certificates would name nothing)."""
    return list(
        published_urls.unserved(
            public_url=inst.config.public_url,
            crl_base_url=inst.config.crl_base_url,
            ca_base_url=inst.config.ca_issuers_base_url,
            host=host,
            port=port,
            http_port=http_port,
        )
    )
