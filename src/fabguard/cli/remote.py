"""Working on a running server from a workstation: ``--server URL`` (or ``FABGUARD_SERVER``), the API token in
``FABGUARD_TOKEN``, the server's CA certificate with ``--ca`` (or ``FABGUARD_CA``).

A command that works both ways reads or writes through :func:`through`, which takes the command's two data
paths: the service call on the instance directory, or the REST API call on the server. Both give the same data
(the API's JSON shape), printed by the command's one printer. The server's ``{"error": {"code", "message"}}``
becomes the same ``FabGuardError`` a local refusal raises, so the operator sees the same one line and exit code;
a server that does not answer is ``server_unavailable`` (exit 4). ADR 0019 says why this shape.
"""

from __future__ import annotations

import os
import ssl
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx

from fabguard.cli.common import TOKEN_ENV, Instance, opened, state
from fabguard.domain.errors import FabGuardError, InvalidRequest

__all__ = ["CA_ENV", "SERVER_ENV", "Remote", "connected", "remote", "through"]

SERVER_ENV = "FABGUARD_SERVER"
CA_ENV = "FABGUARD_CA"
TIMEOUT_SECONDS = 60.0

T = TypeVar("T")


def _unavailable(url: str, why: httpx.TransportError) -> FabGuardError:
    """A transport failure: a server that does not answer (exit 4), or one whose certificate ``--ca`` does not
    vouch for (no retry helps that: refused, ``certificate_untrusted``)."""
    if "CERTIFICATE_VERIFY_FAILED" in str(why):
        return InvalidRequest(
            f"the TLS certificate of {url} is not trusted ({why}): give the CA it chains to with --ca",
            code="certificate_untrusted",
        )
    return FabGuardError(f"server unavailable: {url} does not answer ({why})", code="server_unavailable", status=503)


class Remote:
    """The server's REST API as the CLI calls it: JSON in, JSON out, its errors raised as ours."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    @property
    def url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: object = None
    ) -> httpx.Response:
        """One request; an error answer raised as the ``FabGuardError`` it carries, a failed connection as
        ``server_unavailable``."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            answer = self.http.request(method, path, params=query, json=body)
        except httpx.TransportError as exc:
            raise _unavailable(self.url, exc) from None
        if answer.status_code >= 400:
            raise _error(self.url, answer)
        return answer

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params).json()

    def post(self, path: str, body: object = None, **params: Any) -> Any:
        answer = self.call("POST", path, params=params, body=body)
        return answer.json() if answer.content else None

    def put(self, path: str, body: object = None) -> Any:
        return self.call("PUT", path, body=body).json()

    def delete(self, path: str) -> None:
        self.call("DELETE", path)

    def download(self, method: str, path: str, into: BinaryIO, **params: Any) -> httpx.Headers:
        """Stream an answer that may be large (a ledger export) into ``into``, a chunk at a time; its headers."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self.http.stream(method, path, params=query) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise _error(self.url, answer)
                for chunk in answer.iter_bytes():
                    into.write(chunk)
                return answer.headers
        except httpx.TransportError as exc:
            raise _unavailable(self.url, exc) from None

    def unpack(self, path: str, out: Path, **params: Any) -> httpx.Headers:
        """POST ``path``, whose answer is a directory as a .tar.gz (``api/archives.py``), and unpack it into
        ``out`` (made if need be): no member may land outside ``out``, be a device or link out of it."""
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as archive:
            headers = self.download("POST", path, archive, **params)
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                tar.extractall(out, filter="data")
        return headers


def _error(url: str, answer: httpx.Response) -> FabGuardError:
    try:
        error = answer.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        if answer.status_code in (502, 503, 504):  # a proxy in front of a server that is down
            return FabGuardError(
                f"server unavailable: {url} answered HTTP {answer.status_code}", code="server_unavailable", status=503
            )
        status = answer.status_code
        return FabGuardError(f"{url} answered HTTP {status}, not FabGuard's API", code="http_error", status=status)
    return FabGuardError(message, code=code, status=answer.status_code)


@contextmanager
def connected() -> Iterator[Remote]:
    """The server named by ``--server``, called with the token in FABGUARD_TOKEN, trusting ``--ca``."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise InvalidRequest(f"--server needs an API token in {TOKEN_ENV}", code="token_required")
    assert state.server is not None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(state.ca)) if state.ca else True
    except (OSError, ssl.SSLError) as exc:  # a --ca file that does not open, or is no certificate
        raise InvalidRequest(f"--ca {state.ca}: {exc}", code="certificate_invalid") from None
    http = httpx.Client(base_url=state.server, headers=headers, verify=verify, timeout=TIMEOUT_SECONDS)
    with http:
        yield Remote(http)


def remote() -> bool:
    """Whether this run works on a server (``--server`` or FABGUARD_SERVER) rather than an instance directory."""
    return state.server is not None


def through(local: Callable[[Instance], T], on_server: Callable[[Remote], T]) -> T:
    """The command's data: ``local`` on the instance directory, or ``on_server`` through the server's API."""
    if remote():
        with connected() as api:
            return on_server(api)
    with opened() as inst:
        return local(inst)
