"""Carrying the TLS-verified client certificate from uvicorn to the application.

uvicorn verifies a client certificate during the handshake (``ssl_cert_reqs``) but does not hand
it to the app. This protocol class reads the peer certificate from the connection's SSL object
and puts it into each request's scope as the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM). The app trusts nothing else: a request
whose scope lacks it has no fixture identity and is refused on fixture routes. See docs/adr/0001.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]


def _client_chain(transport: Any) -> list[str]:
    ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return []
    der = ssl_object.getpeercert(binary_form=True)
    return [ssl.DER_cert_to_PEM_cert(der)] if der else []


class _WithClientCert:
    """Wraps the app for one connection, adding that connection's client certificate to each scope."""

    def __init__(self, app: Any, chain: list[str]) -> None:
        self.app = app
        self.chain = chain

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = {"client_cert_chain": list(self.chain)}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the verified client certificate in the ASGI scope.

    Also a deadline on each request's line and headers: a connection whose next request is not
    complete up to its body within ``timeout_keep_alive`` seconds of the handshake or of the last
    answer is closed (uvicorn's own keep-alive timer stops at the first byte, so a client sending its
    headers slowly would hold the connection for ever); and what h11 cannot read is answered with the
    API's JSON error body.
    """

    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.app = _WithClientCert(self.app, _client_chain(transport))
        self._arm_headers_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self._headers_deadline is not None:
            self._headers_deadline.cancel()  # the request's headers are in
            self._headers_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_headers_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
        super().connection_lost(exc)

    def _arm_headers_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
        self._headers_deadline = self.loop.call_later(self.timeout_keep_alive, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size or 16 * 1024  # h11's default
        if len(self.conn.trailing_data[0]) > limit:
            status, code, text = 431, "headers_too_large", "the request line and headers are too large"
        else:
            status, code, text = 400, "malformed_request", "the request is not HTTP/1.1 this server can read"
        body = json.dumps({"error": {"code": code, "message": text}}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def client_cert_der(scope: Scope) -> bytes | None:
    """The DER client certificate our protocol put into the scope, or None."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return ssl.PEM_cert_to_DER_cert(chain[0])
