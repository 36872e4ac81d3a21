"""Running the app under uvicorn over HTTPS, with client certificates for fixtures, and the plain-HTTP
publication listener (CRLs and CA certificates); both with a bound on connections (``api.connections``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import uvicorn

from fabguard.api.app import create_app
from fabguard.api.connections import (
    HANDSHAKE_SECONDS,
    Bound,
    BoundedEventLoop,
    OpenConnections,
    ServerConfig,
    connection_limit,
)
from fabguard.api.httptools_protocol import ClientCertHttpToolsProtocol
from fabguard.api.logs import LogFormat, log_config
from fabguard.api.multiprocess_metrics import MetricsSupervisor, worker_metrics_dir
from fabguard.api.publication import create_publication_app
from fabguard.api.server_tls import ReloadableTLS, ReloadingMultiprocess
from fabguard.api.tls import ClientCertH11Protocol
from fabguard.api.uvloop_bound import BoundedUVLoop
from fabguard.runtime import tune_gc
from fabguard.service.core import client_trust
from fabguard.service.core.instance import Instance

# How long uvicorn's supervisor waits for a worker to answer its ping before it kills it as hung. A new
# worker answers only once it has imported the app; on a loaded 2-core machine that took over uvicorn's
# default 5 s, and the supervisor then killed and restarted every worker for ever. A dead worker is still
# replaced at once (its process is gone); only a live but silent one waits this long.
WORKER_HEALTHCHECK_S = 30


def write_client_trust(inst: Instance) -> None:
    """The CAs whose certificates may be presented at the handshake; CAs made later reach running servers
    without a restart (``service.core.client_trust``)."""
    client_trust.write_client_trust(inst)


def app_for_home(home: str) -> Any:
    """App factory for worker processes: opens the instance at ``home``, which the supervisor hands each
    worker with its (pickled) configuration, so nothing is passed through this process's environment; only
    the metrics directory is (``api.multiprocess_metrics``: prometheus_client reads it at its import)."""
    tune_gc()
    return create_app(Instance.open(Path(home), migrate=False), metrics_dir=worker_metrics_dir())


# The HTTP stacks a server can run (ADR 0016): llhttp's parser on uvloop (the default), or uvicorn's pure-Python
# h11 on asyncio's selector loop (the stack before; kept so bench/peer.py can measure one against the other).
Stack = Literal["httptools", "h11"]
STACKS: tuple[Stack, ...] = ("httptools", "h11")
_PROTOCOLS: dict[Stack, type[Any]] = {"httptools": ClientCertHttpToolsProtocol, "h11": ClientCertH11Protocol}


def connection_bound(inst: Instance, connections: OpenConnections | None = None, http: Stack = "httptools") -> Bound:
    """The bound of a server of ``inst``: ``connections`` (shared by the listeners of one process), else
    ``limits.max_connections`` within this process's open-file limit; kept by the ``http`` stack's loop."""
    connections = connections or OpenConnections(connection_limit(inst.limits.max_connections))
    loop = BoundedUVLoop if http == "httptools" else BoundedEventLoop
    return Bound(connections, handshake_seconds=min(HANDSHAKE_SECONDS, inst.limits.idle_seconds), loop=loop)


def server_config(
    inst: Instance,
    *,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "warning",
    log_format: LogFormat = "text",
    access_log: bool = False,
    connections: OpenConnections | None = None,
    http: Stack = "httptools",
) -> uvicorn.Config:
    write_client_trust(inst)
    common: dict[str, Any] = dict(
        bound=connection_bound(inst, connections, http),
        host=host,
        port=port,
        http=_PROTOCOLS[http],
        ssl_context_factory=ReloadableTLS(str(inst.home)),  # its certificate reloads on SIGHUP
        log_config=log_config(log_level, log_format, access_log=access_log),
        log_level=log_level,
        access_log=False,  # replaced by api.logs.RequestLog's line (the log configuration turns it on)
        lifespan="on",
        timeout_keep_alive=inst.limits.idle_seconds,  # our protocols apply it to the first request's headers too
        h11_max_incomplete_event_size=inst.limits.max_header_bytes,
        server_header=False,
    )
    if workers > 1:
        return ServerConfig(
            partial(app_for_home, str(inst.home)),
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            **common,
        )
    return ServerConfig(create_app(inst), **common)


def publication_config(
    inst: Instance,
    *,
    host: str,
    port: int,
    log_level: str = "warning",
    log_format: LogFormat = "text",
    access_log: bool = False,
    connections: OpenConnections | None = None,
    http: Stack = "httptools",
) -> uvicorn.Config:
    """The plain-HTTP listener that serves only CRLs and CA certificates (``api.publication``)."""
    return ServerConfig(
        create_publication_app(inst),
        bound=connection_bound(inst, connections, http),
        host=host,
        port=port,
        http=_PROTOCOLS[http],
        log_config=log_config(log_level, log_format, access_log=access_log),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=inst.limits.idle_seconds,
        h11_max_incomplete_event_size=inst.limits.max_header_bytes,
        server_header=False,
    )


def run_server(
    config: uvicorn.Config, publication: ServerThread | None = None, *, metrics_dir: Path | None = None
) -> None:
    """Serve until stopped: in this process, or with ``config.workers > 1`` as that many worker processes
    on one listening socket under uvicorn's supervisor (which restarts a worker that dies), their metrics
    shared through ``metrics_dir`` (``api.multiprocess_metrics``: ``serve`` makes it and names it in the
    workers' environment). The ``publication`` listener, if any, runs on a thread of this process meanwhile.

    ``uvicorn.Server(config).run()`` alone serves from this one process whatever ``workers`` says.
    """
    sockets = [config.bind_socket()]  # bound here, so the bounded loop wraps it (api.connections)
    if publication is not None:
        publication.start()
    try:
        if config.workers > 1 and metrics_dir is not None:
            MetricsSupervisor(config, sockets, metrics_dir).run()
        elif config.workers > 1:
            ReloadingMultiprocess(config, sockets=sockets).run()
        else:
            uvicorn.Server(config).run(sockets=sockets)
    finally:
        if publication is not None:
            publication.stop()


class ServerThread:
    """A server on a background thread of this process: the app over HTTPS (the demo and the tests use
    it), or with ``config`` another, such as the plain-HTTP publication listener."""

    def __init__(
        self,
        inst: Instance,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: Callable[..., uvicorn.Config] = server_config,
        connections: OpenConnections | None = None,
        http: Stack = "httptools",
    ) -> None:
        # IPPROTO_TCP, as uvicorn's own bind_socket has it: asyncio sets TCP_NODELAY only on a socket whose
        # proto says TCP (proto 0 does not), and without it every answer, written as headers then body,
        # waited about 40 ms for the client's delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.server = uvicorn.Server(config(inst, host=host, port=self.port, connections=connections, http=http))
        self._thread: Any = None

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.is_ssl else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
