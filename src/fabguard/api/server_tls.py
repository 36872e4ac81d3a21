"""The HTTPS listener's TLS context, whose certificate is replaced without a restart.

The listener keeps the one ``ssl.SSLContext`` it was started with (the *front* context); its SNI callback,
which OpenSSL calls on every ClientHello (with or without a server name), moves each new connection onto
the context most recently loaded. ``reload`` (on SIGHUP) loads the files again into a new context and,
only if that succeeds, makes it the current one: new connections get the new certificate, connections
already open keep the one they shook hands with, and a bad file leaves the old certificate serving.

With several worker processes the supervisor checks the files, then passes SIGHUP on to each worker,
which reloads by itself (no worker is restarted).
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvicorn.supervisors import Multiprocess

from fabguard.api.tls_pkcs11 import load_pkcs11_key
from fabguard.domain.errors import FabGuardError
from fabguard.pki.keys import passphrase_from_env, pin_from_env
from fabguard.pki.server_tls import ServerCredentials, parse_chain
from fabguard.service.core import server_tls
from fabguard.service.core.client_trust import CLIENT_TRUST
from fabguard.service.core.config import load_config

log = logging.getLogger("fabguard.serve")
# How often a handshake may look whether ``ca/client-trust.pem`` changed (one stat): a CA added to the registry
# (a site agent's, a new issuing CA) is trusted by every server process within about this long, no restart.
TRUST_CHECK_SECONDS = 1.0


class ReloadableTLS:
    """uvicorn's ``ssl_context_factory`` for FabGuard's HTTPS listener (picklable: worker processes rebuild it).

    The certificate is the operator's if ``instance.json`` names one (``fabguard config tls``), else the one
    ``init`` made under the station CA. Client certificates are optional at the handshake (enrolment and
    admin calls come without one) but, when presented, must chain to one of this instance's CAs
    (``ca/client-trust.pem``: the root, the station CA and the issuing CAs), whichever server certificate
    is served. Which certificate may do what is the app's decision. See docs/adr/0001.
    """

    def __init__(self, home: str) -> None:
        self.home = home
        self._current: ssl.SSLContext | None = None
        self._trust_seen: tuple[int, int, int] | None = None  # the client-trust file loaded: (inode, size, mtime)
        self._trust_checked = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"home": self.home}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.home = state["home"]
        self._current = None
        self._trust_seen = None
        self._trust_checked = 0.0

    def __call__(self, config: Any = None, default: Callable[[], ssl.SSLContext] | None = None) -> ssl.SSLContext:
        front = self.build()
        front.sni_callback = self._choose
        self._current = front
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._on_sighup)  # this process serves: a SIGHUP reloads
        return front

    def build(self) -> ssl.SSLContext:
        """A new context from the files as they are now; raises a FabGuardError if they do not do."""
        return self._load()[0]

    def _load(self) -> tuple[ssl.SSLContext, str]:
        home = Path(self.home)
        ctx = _server_context()
        files = server_tls.operator_files(load_config(home))
        if files is None:
            chain = home / server_tls.STATION_CHAIN
            ctx.load_cert_chain(str(chain), str(home / server_tls.STATION_KEY), password=passphrase_from_env())
            served = ServerCredentials(parse_chain(chain.read_bytes(), str(chain)))
        else:
            served = load_operator(ctx, files)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        trust = home / "ca" / CLIENT_TRUST
        seen = _file_state(trust)
        ctx.load_verify_locations(cafile=str(trust))
        self._trust_seen = seen
        return ctx, served.describe()

    def reload(self) -> str:
        """Load the files again; new connections get the new certificate, which this describes (raises,
        keeping the old, on a bad file)."""
        fresh, described = self._load()
        self._current = fresh
        return described

    def _choose(self, ssl_object: ssl.SSLObject, server_name: str | None, front: ssl.SSLContext) -> None:
        self._trust_changed()
        current = self._current
        if current is not None and current is not front:
            ssl_object.context = current

    def _trust_changed(self) -> None:
        """Load the files again if the client-trust file changed since they were loaded (looked at no more than
        every ``TRUST_CHECK_SECONDS``): this handshake and the next ones trust the CAs it names now."""
        now = time.monotonic()
        if now - self._trust_checked < TRUST_CHECK_SECONDS:
            return
        self._trust_checked = now
        try:
            if _file_state(Path(self.home) / "ca" / CLIENT_TRUST) == self._trust_seen:
                return
            self.reload()
        except Exception as exc:  # as on SIGHUP: the old context serves on
            _not_reloaded(exc)
            return
        log.info("the CAs clients may present changed: new connections trust them")

    def _on_sighup(self, signum: int, frame: object) -> None:
        # Runs between two bytecodes of whatever the main thread was doing (the event loop): nothing may
        # escape from here, whatever a broken file makes the loading raise.
        try:
            served = self.reload()
        except Exception as exc:
            _not_reloaded(exc)
            return
        log.info("SIGHUP: the TLS certificate was reloaded; new connections get %s", served)


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _not_reloaded(exc: Exception) -> None:
    expected = isinstance(exc, (FabGuardError, OSError))  # ssl.SSLError is an OSError
    log.error(
        "SIGHUP: the TLS certificate was not reloaded, the old one still serves: %s",
        exc,
        exc_info=None if expected else exc,
    )


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def load_operator(ctx: ssl.SSLContext, files: server_tls.OperatorFiles) -> ServerCredentials:
    """Make ``ctx`` serve the operator's certificate and key (a PEM file, or in an HSM), checked first."""
    served = server_tls.read_credentials(files)  # the clear refusals: unreadable, mismatched, out of order
    if files.pkcs11_key is not None and files.pkcs11_module is not None:
        load_pkcs11_key(ctx, files.cert, files.pkcs11_key, files.pkcs11_module, pin_from_env())
    elif files.key is not None:
        ctx.load_cert_chain(str(files.cert), str(files.key), password=files.passphrase())
    return served


def check_operator(files: server_tls.OperatorFiles) -> ServerCredentials:
    """The operator's certificate and key loaded as the listener would (a key in an HSM included), or why not."""
    return load_operator(_server_context(), files)


class ReloadingMultiprocess(Multiprocess):
    """uvicorn's supervisor of worker processes, whose SIGHUP reloads the TLS certificate in every worker
    (checked here first) instead of restarting them."""

    def handle_hup(self) -> None:
        factory = self.config.ssl_context_factory
        if not isinstance(factory, ReloadableTLS):
            super().handle_hup()
            return
        try:
            factory.build()
        except Exception as exc:  # whatever a broken file raises, the supervisor goes on
            _not_reloaded(exc)
            return
        # A worker still starting (no handler yet) dies of the signal; the supervisor replaces it, and its
        # replacement loads the new files anyway.
        for process in self.processes:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)
        log.info("SIGHUP: the TLS certificate is reloaded by %d worker(s)", len(self.processes))
