"""Bounding a server process's connections, and logging what repeats once per interval with a count.

A flood of idle connections once ran the server out of file descriptors: asyncio then logged
"socket.accept() out of system resource" with a traceback for every pending connection, over and
over (its accept loop carries on after the error and schedules one retry per attempt), and health
checks stalled. Here:

- ``raise_open_file_limit`` lifts the soft descriptor limit to the hard one when the server starts;
- each listening socket accepts at most ``max_connections`` open connections per process (fewer when
  the descriptor limit leaves less room); one more is accepted and at once reset, so the kernel's
  backlog drains instead of filling, and a client learns at once;
- a TLS handshake must end within ``HANDSHAKE_SECONDS``;
- an accept that fails for want of descriptors or memory is handed to asyncio once (which stops
  accepting for a second) and the rest of that accept round ends quietly;
- the event loop's exception handler and the refusals log each kind of message once per
  ``LOG_INTERVAL_SECONDS``, saying how many more there were.

The loop is asyncio's selector loop with ``create_server`` wrapping the socket it is given, or on uvloop
``api.uvloop_bound.BoundedUVLoop``, which accepts through the same wrapper (``ServerConfig`` hands the
bound's loop to uvicorn, in this process and in each worker process).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import resource
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

log = logging.getLogger("fabguard.api.connections")

LOG_INTERVAL_SECONDS = 10.0
HANDSHAKE_SECONDS = 10.0
# Descriptors kept for everything but client connections (up to half the limit): database connections
# (SQLite's pool at its fullest holds over 200: the database, its WAL and shared memory each), log and
# key files, the event loop's own, worker pipes.
FD_HEADROOM = 256
# Errors for which asyncio stops accepting for a second (asyncio.selector_events). After handing it the
# first, the rest of that accept round ends at once; a pause shorter than asyncio's one-second retry.
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ROUND_SECONDS = 0.25
# Connections over the bound refused in one call of accept(), so a flood does not hold the loop.
_REFUSALS_PER_CALL = 256
# SO_LINGER on, zero seconds: close() sends a reset instead of waiting out a FIN handshake.
_RESET = struct.pack("ii", 1, 0)


def raise_open_file_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. a hard limit above the kernel's nr_open: keep what we have
            pass
    return soft


def connection_limit(configured: int) -> int:
    """``configured``, or less when this process's descriptor limit leaves less room."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = configured if soft == resource.RLIM_INFINITY else soft - min(FD_HEADROOM, soft // 2)
    return max(1, min(configured, room))


class RepeatedLog:
    """Lets the first message of each kind through, then holds that kind back for ``interval`` and reports
    how many were held, once per interval (``flush``, which the first one held asks ``schedule`` to run)."""

    def __init__(
        self,
        schedule: Callable[[float, Callable[[], None]], object],
        interval: float = LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._schedule = schedule
        self._clock = clock
        self._let_through: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, kind: str) -> bool:
        """Whether to log this one of ``kind`` now (else it is counted)."""
        now = self._clock()
        last = self._let_through.get(kind)
        if last is None or now - last >= self.interval:
            self._let_through[kind] = now
            return True
        if not self._held:
            self._schedule(self.interval, self.flush)
        self._held[kind] = self._held.get(kind, 0) + 1
        return False

    def flush(self) -> None:
        """Log how many of each kind were held back since the last report."""
        held, self._held = self._held, {}
        for kind, count in held.items():
            log.warning("%s: %d more in the last %g s", kind.split("|")[0], count, self.interval)


class OpenConnections:
    """How many accepted connections are open in this process, against a limit. Picklable: a worker
    process gets the limit and counts its own."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open -= 1

    def __getstate__(self) -> dict[str, Any]:
        return {"limit": self.limit}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["limit"])  # type: ignore[misc]


class _CountedSocket(socket.socket):
    """An accepted connection that gives its place back when it is closed, detached or collected."""

    __slots__ = ("_release",)
    _release: Callable[[], None]

    def bind_release(self, connections: OpenConnections) -> None:
        self._release = weakref.finalize(self, connections.release)

    def close(self) -> None:
        self._release()
        super().close()

    def detach(self) -> int:
        self._release()
        return super().detach()


class _BoundedListener(socket.socket):
    """A listening socket whose ``accept`` (what asyncio calls) keeps to ``OpenConnections``."""

    __slots__ = ("_connections", "_log", "_quiet_until")
    _connections: OpenConnections
    _log: RepeatedLog
    _quiet_until: float

    @classmethod
    def wrap(cls, sock: socket.socket, connections: OpenConnections, repeated: RepeatedLog) -> _BoundedListener:
        listener = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener._connections = connections
        listener._log = repeated
        listener._quiet_until = 0.0
        return listener

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() < self._quiet_until:
            raise BlockingIOError(errno.EAGAIN, "the rest of this accept round waits for asyncio's retry")
        for _ in range(_REFUSALS_PER_CALL):
            try:
                fd, address = self._accept()  # type: ignore[attr-defined]
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._quiet_until = time.monotonic() + _ROUND_SECONDS
                raise
            if self._connections.take():
                conn = _CountedSocket(self.family, self.type, self.proto, fileno=fd)
                conn.bind_release(self._connections)
                return conn, address
            self._refuse(fd)
        # The socket stays readable: the loop comes back to the rest after its other work.
        raise BlockingIOError(errno.EAGAIN, "more connections over the limit wait for the next round")

    def _refuse(self, fd: int) -> None:
        refused = socket.socket(self.family, self.type, self.proto, fileno=fd)
        with contextlib.suppress(OSError):  # already reset by the client: closing is all there is to do
            refused.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        refused.close()
        if self._log.admit("refused connections over the limit"):
            log.warning(
                "refused a connection: %d are open, the limit of this process (limits.max_connections, "
                "or what the open-file limit leaves); further refusals are counted every %g s",
                self._connections.limit,
                self._log.interval,
            )


def log_loop_exception(
    loop: asyncio.AbstractEventLoop, repeated: RepeatedLog, connections: OpenConnections, context: dict[str, Any]
) -> None:
    """An event loop's exception handler: each kind of message once per interval with a count, and a want
    of descriptors or memory as one line with the connection count instead of a traceback."""
    exc = context.get("exception")
    message = str(context.get("message") or "unhandled error in the event loop")
    kind = f"{message}|{type(exc).__name__}|{getattr(exc, 'errno', '')}"
    if not repeated.admit(kind):
        return
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:  # the cause is the news, not a traceback
        log.error(
            "%s: %s; %d connections open, limit %d; repeats are counted every %g s",
            message,
            exc.strerror,
            connections.open,
            connections.limit,
            repeated.interval,
        )
        return
    loop.default_exception_handler(
        {**context, "message": f"{message} (repeats are counted every {repeated.interval:g} s)"}
    )


class BoundedEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop whose servers keep to a connection bound and a handshake deadline, and whose
    unhandled errors are logged once per interval with a count."""

    def __init__(self, connections: OpenConnections, handshake_seconds: float = HANDSHAKE_SECONDS) -> None:
        super().__init__()
        self._connections = connections
        self._handshake_seconds = handshake_seconds
        self._repeated = RepeatedLog(self.call_later)
        self.set_exception_handler(self._log_exception)

    async def create_server(
        self, protocol_factory: Any, host: Any = None, port: Any = None, *, sock: Any = None, **kwargs: Any
    ) -> asyncio.Server:
        if sock is None:
            raise ValueError("a FabGuard server listens on a socket it bound (ServerConfig.bind_socket)")
        if kwargs.get("ssl") is not None and kwargs.get("ssl_handshake_timeout") is None:
            kwargs["ssl_handshake_timeout"] = self._handshake_seconds
        listener = _BoundedListener.wrap(sock, self._connections, self._repeated)
        return await super().create_server(protocol_factory, sock=listener, **kwargs)

    def _log_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        log_loop_exception(loop, self._repeated, self._connections, context)

    def close(self) -> None:
        self._repeated.flush()
        super().close()


@dataclass(frozen=True)
class Bound:
    """The connection bound of a server: the process's count, the TLS handshake deadline, and the event loop
    that keeps to them (``BoundedEventLoop``, or ``api.uvloop_bound.BoundedUVLoop`` on uvloop)."""

    connections: OpenConnections
    handshake_seconds: float = HANDSHAKE_SECONDS
    loop: Callable[[OpenConnections, float], asyncio.AbstractEventLoop] = BoundedEventLoop


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration, whose event loop (here and in every worker process) is the bound's loop."""

    def __init__(self, app: Any, *, bound: Bound, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.bound = bound

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        return functools.partial(self.bound.loop, self.bound.connections, self.bound.handshake_seconds)


__all__ = [
    "Bound",
    "BoundedEventLoop",
    "OpenConnections",
    "RepeatedLog",
    "ServerConfig",
    "connection_limit",
    "raise_open_file_limit",
]
