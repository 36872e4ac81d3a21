"""Carrying the TLS-verified client certificate from uvicorn to the application.

uvicorn verifies a client certificate during the handshake (``ssl_cert_reqs``) but does not hand
it to the app. This protocol class reads the peer certificate from the connection's SSL object
and puts it into each request's scope as the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM). The app trusts nothing else: a request
whose scope lacks it has no fixture identity and is refused on fixture routes. See docs/adr/0001.
"""

from __future__ import annotations

import ssl
from collections.abc import MutableMapping
from typing import Any

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
    """uvicorn's h11 protocol, plus the verified client certificate in the ASGI scope."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.app = _WithClientCert(self.app, _client_chain(transport))


def client_cert_der(scope: Scope) -> bytes | None:
    """The DER client certificate our protocol put into the scope, or None."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return ssl.PEM_cert_to_DER_cert(chain[0])
