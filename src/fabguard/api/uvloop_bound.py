"""The connection bound of ``api.connections`` on uvloop.

uvloop accepts in libuv, never through the listening socket's Python ``accept``, so the bounded listener
(``_BoundedListener``) would be bypassed. Here the loop's ``create_server`` does what asyncio's selector loop
does, with the same bound: it watches the listening socket, accepts through the bounded listener (a
connection over the bound is reset at once, a counted one gives its place back when uvloop detaches or
closes it), hands each accepted connection to uvloop (``connect_accepted_socket``, TLS handshake deadline
included) and, when ``accept`` fails for want of descriptors or memory, reports it once to the exception
handler and stops accepting for a second. What runs after the accept (TLS, reads, writes) is uvloop's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import uvloop

from fabguard.api.connections import (
    _OUT_OF_RESOURCES,
    HANDSHAKE_SECONDS,
    OpenConnections,
    RepeatedLog,
    _BoundedListener,
    log_loop_exception,
)

ACCEPT_RETRY_SECONDS = 1.0  # asyncio's own pause after an accept that ran out of descriptors


class BoundedUVLoop(uvloop.Loop):
    """uvloop's loop whose servers keep to a connection bound and a handshake deadline, and whose unhandled
    errors are logged once per interval with a count (as ``BoundedEventLoop``)."""

    def __init__(self, connections: OpenConnections, handshake_seconds: float = HANDSHAKE_SECONDS) -> None:
        super().__init__()
        self._connections = connections
        self._handshake_seconds = handshake_seconds
        self._repeated = RepeatedLog(self.call_later)
        self.set_exception_handler(self._log_exception)

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: Any = None,
        port: Any = None,
        *,
        sock: socket.socket | None = None,
        ssl: Any = None,
        backlog: int = 100,
        **kwargs: Any,
    ) -> BoundedServer:
        if sock is None:
            raise ValueError("a FabGuard server listens on a socket it bound (ServerConfig.bind_socket)")
        listener = _BoundedListener.wrap(sock, self._connections, self._repeated)
        listener.setblocking(False)
        listener.listen(backlog)
        server = BoundedServer(self, listener, protocol_factory, ssl, self._handshake_seconds, backlog)
        server.start()
        return server

    def _log_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        log_loop_exception(loop, self._repeated, self._connections, context)

    def close(self) -> None:
        self._repeated.flush()
        super().close()


class BoundedServer:
    """What ``create_server`` returns: accepts on ``listener`` until closed (the part of ``asyncio.Server``
    uvicorn uses: ``close``, ``wait_closed``, ``sockets``)."""

    def __init__(
        self,
        loop: BoundedUVLoop,
        listener: _BoundedListener,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        ssl: Any,
        handshake_seconds: float,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._listener = listener
        self._factory = protocol_factory
        self._ssl = ssl
        self._handshake_seconds = handshake_seconds
        self._backlog = max(1, backlog)
        self._retry: asyncio.TimerHandle | None = None
        self._serving = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.sockets = [listener]

    def start(self) -> None:
        self._retry = None
        if self._listener.fileno() == -1:
            return
        self._loop.add_reader(self._listener.fileno(), self._accept)
        self._serving = True

    def is_serving(self) -> bool:
        return self._serving

    def _accept(self) -> None:
        for _ in range(self._backlog):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise  # the loop's exception handler logs it (once per interval)
                self._loop.call_exception_handler(
                    {"message": "socket.accept() out of system resource", "exception": exc}
                )
                self._stop_reading()
                self._retry = self._loop.call_later(ACCEPT_RETRY_SECONDS, self.start)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            protocol = self._factory()
        except Exception:
            conn.close()
            raise
        with contextlib.suppress(OSError, ValueError, asyncio.TimeoutError):
            # From here uvloop owns the socket (it detaches it when the transport closes); a handshake that
            # fails or runs out of time is the client's affair, which asyncio's loop does not log either.
            await self._loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=self._handshake_seconds if self._ssl is not None else None,
            )

    def _stop_reading(self) -> None:
        if self._serving:
            with contextlib.suppress(OSError, ValueError):
                self._loop.remove_reader(self._listener.fileno())
            self._serving = False

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._stop_reading()
        self._listener.close()

    async def wait_closed(self) -> None:
        return None


__all__ = ["ACCEPT_RETRY_SECONDS", "BoundedServer", "BoundedUVLoop"]
