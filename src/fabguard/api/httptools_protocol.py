"""uvicorn's httptools protocol with what ``api.tls.ClientCertH11Protocol`` adds to h11's (docs/adr/0014).

The same guarantees, on llhttp's parser instead of h11's pure-Python one:

- the TLS-verified client certificate goes into each request's scope as the ASGI TLS extension
  (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM), read once from the connection's SSL object;
- a request's line and headers must be complete within ``timeout_keep_alive`` seconds of the handshake or
  of the last answer, else the connection is closed without an answer (uvicorn's keep-alive timer stops
  at the first byte);
- a request line and headers still incomplete past ``h11_max_incomplete_event_size`` bytes get ``431
  headers_too_large`` and the connection is closed (llhttp itself has no such bound; a complete head over
  the limit is refused by the app's ``BodyLimit``, as under h11);
- what llhttp cannot read gets ``400 malformed_request``, with the API's JSON error body.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fabguard.api.tls import _client_chain

DEFAULT_HEAD_LIMIT = 16 * 1024  # h11's default, the same bound under both protocols


class ClientCertHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the verified client certificate in the ASGI scope and the deadline
    and size bound on each request's line and headers (module docstring)."""

    _headers_deadline: asyncio.TimerHandle | None = None
    _chain: list[str]
    _awaiting_head = True
    _head_bytes = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._chain = _client_chain(transport)
        self._head_limit = self.config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT
        self._arm_headers_deadline()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > self._head_limit and not self.transport.is_closing():
            self._answer_and_close(431, "headers_too_large", "the request line and headers are too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": {"client_cert_chain": list(self._chain)}}

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()  # the request's headers are in
            self._headers_deadline = None
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before and self.cycle is not None and self.cycle.transport is self.transport:
            self.cycle.transport = _OneWrite(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing() and self._awaiting_head:
            self._arm_headers_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None
        super().connection_lost(exc)

    def _arm_headers_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
        self._headers_deadline = self.loop.call_later(self.timeout_keep_alive, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if self._awaiting_head and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(400, "malformed_request", "the request is not HTTP/1.1 this server can read")

    def _answer_and_close(self, status: int, code: str, text: str) -> None:
        body = json.dumps({"error": {"code": code, "message": text}}).encode()
        reason = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}[status]
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body))
        )
        self.transport.write(head + body)
        self.transport.close()


class _OneWrite:
    """A response's transport that sends its head together with what follows: uvicorn writes the head and
    the body separately, two TLS records and two system calls for every answer (issue 28's profile had the
    writes near the top). The head is held until the next write, or the end of this turn of the loop (a
    streamed answer's head goes out at once); every later write passes straight through."""

    __slots__ = ("_held", "_loop", "_passing", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._passing = False

    def write(self, data: bytes) -> None:
        if self._passing:
            self._transport.write(data)
        elif self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            held, self._held, self._passing = self._held, None, True
            self._transport.write(held + data)

    def _flush(self) -> None:
        self._passing = True
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


__all__ = ["ClientCertHttpToolsProtocol"]
