"""Client SDK for fixtures: enrol once, then upload test records and provision units over mutual TLS.

Every upload and provisioning request carries an ``Idempotency-Key``: a fresh UUID per call (or the
caller's ``idempotency_key``, to resend a request whose answer was lost), the same on the client's own
retries. The server keeps each answer with its work, so a resend stores nothing twice; that is also
why the client may resend on its own a request answered "busy": ``idempotency_key_in_progress`` (409:
the same key is still at work, perhaps in a server process that died and whose key is free within
seconds) or any 503 (nothing was done).
"""

from __future__ import annotations

import json
import os
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabguard_station.errors import FixtureError

KEY_FILE = "fixture.key"
CERT_FILE = "fixture.pem"
CA_FILE = "ca.pem"
INFO_FILE = "fixture.json"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# The server's answer while another request with the same key is at work: sent again, the same key.
_IN_PROGRESS = "idempotency_key_in_progress"
# Longest wait between two sends of a busy request (the first waits ``retry_delay``, then it doubles).
_BUSY_WAIT_CAP = 2.0


class FabGuardClientError(FixtureError):
    """The server refused a request: ``code`` is the stable refusal code, ``status`` the HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Credentials:
    """What enrolment leaves in a directory: key, certificate, the CA chain that names the server."""

    directory: Path
    fixture_id: str
    site_id: str
    server: str

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    @classmethod
    def load(cls, directory: Path) -> Credentials:
        info = json.loads((directory / INFO_FILE).read_text())
        return cls(directory, info["fixture_id"], info["site_id"], info["server"])


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        err = response.json()["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200]
    raise FabGuardClientError(response.status_code, code, message)


def enroll(server: str, token: str, out_dir: Path, *, ca_file: Path, timeout: float = 30.0) -> Credentials:
    """Make the fixture's key here, send its CSR with the one-time token, store the issued credentials."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fabguard-fixture")]))
        .sign(key, hashes.SHA256())
    )
    verify = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(base_url=server, verify=verify, timeout=timeout) as http:
        response = http.post(
            "/api/v1/enroll",
            json={"token": token, "csr": csr.public_bytes(serialization.Encoding.PEM).decode()},
        )
    _raise_for(response)
    body = response.json()
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path = out_dir / KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when re-enrolling over an existing file
    with os.fdopen(fd, "wb") as fh:
        # The station's own TLS key: curl and line tools need it readable without a passphrase,
        # so it is protected by file permissions (0600), like any TLS client key.
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    (out_dir / CERT_FILE).write_text(body["certificate"])
    (out_dir / CA_FILE).write_text("".join(body["ca_certificates"]))
    (out_dir / INFO_FILE).write_text(
        json.dumps({"fixture_id": body["fixture_id"], "site_id": body["site_id"], "server": server}, indent=2)
    )
    return Credentials(out_dir, body["fixture_id"], body["site_id"], server)


@dataclass(frozen=True)
class Issued:
    serial: str
    certificate_pem: str
    chain_pem: list[str]
    replayed: bool
    identity: dict[str, Any] | None = None  # serial, MAC addresses, Matter data, where the product has pools


class FixtureClient:
    """A fixture's session with the server. Thread-safe; one per station is enough.

    A request that fails in transit (connection lost, timeout) is sent again, up to ``retries`` times,
    ``retry_delay`` seconds apart (doubling), with the same key. A request answered busy
    (``idempotency_key_in_progress``, or 503 such as ``database_unavailable``) is sent again with the
    same key for up to ``busy_retry_seconds`` (10 s: a server process that died mid-batch frees its key
    within about 5 s), ``retry_delay`` seconds apart, doubling up to 2 s (or the answer's
    ``Retry-After``, if longer); then the last answer is raised. 0 hands every busy answer on at once.
    ``transport`` replaces httpx's own (it then makes the TLS connection itself; see ``tls_context``).
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        server: str | None = None,
        timeout: float = 60.0,
        max_connections: int = 10,
        retries: int = 2,
        retry_delay: float = 0.25,
        busy_retry_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self.retries = retries
        self.retry_delay = retry_delay
        self.busy_retry_seconds = busy_retry_seconds
        self._http = httpx.Client(
            base_url=server or credentials.server,
            verify=tls_context(credentials),
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    def __enter__(self) -> FixtureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(
        self,
        path: str,
        body: Any,
        key: str | None,
        *,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """POST ``body`` as JSON, or as it is (bytes) with ``content_type``; the answer's JSON."""
        headers = {IDEMPOTENCY_HEADER: key or str(uuid.uuid4())}
        sent: dict[str, Any] = {"json": body}
        if content_type is not None:
            headers["Content-Type"] = content_type
            sent = {"content": body}
        lost = busy = 0
        busy_since: float | None = None
        while True:
            try:
                response = self._http.post(path, headers=headers, params=params, **sent)
            except httpx.TransportError:
                if lost >= self.retries:
                    raise
                time.sleep(self.retry_delay * 2**lost)
                lost += 1
                continue
            if _busy(response):
                now = time.monotonic()
                busy_since = now if busy_since is None else busy_since
                wait = min(max(self.retry_delay * 2**busy, _retry_after(response)), _BUSY_WAIT_CAP)
                if now + wait - busy_since <= self.busy_retry_seconds:
                    time.sleep(wait)
                    busy += 1
                    continue
            _raise_for(response)
            return response.json()

    def whoami(self) -> dict[str, str]:
        response = self._http.get("/api/v1/fixture/whoami")
        _raise_for(response)
        result: dict[str, str] = response.json()
        return result

    def upload_test_record(self, record: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Upload one OpenHTF JSON test record."""
        result: dict[str, Any] = self._post("/api/v1/test-records", record, idempotency_key)
        return result

    def upload_test_file(
        self,
        data: bytes,
        content_type: str,
        *,
        format: str = "auto",
        tz: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Upload a station's own report as it is (``content_type``: ``application/xml``, ``text/csv`` or
        ``application/json``); the server parses it (``format``, ``auto`` by default; ``tz``: the
        station's IANA zone for times written without one). Returns each stored UUT record."""
        params = {"format": format}
        if tz is not None:
            params["tz"] = tz
        body = self._post("/api/v1/test-records", data, idempotency_key, content_type=content_type, params=params)
        records: list[dict[str, Any]] = body.get("records", [body])
        return records

    def upload_test_records(
        self, records: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Upload many records in one request; each result says ``stored`` or ``refused``."""
        body = {"records": records}
        results: list[dict[str, Any]] = self._post("/api/v1/test-records/batch", body, idempotency_key)["results"]
        return results

    def provision(
        self,
        order_id: str,
        serial: str,
        csr_pem: str,
        *,
        attestation: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Issued:
        """Ask for a unit's device certificate; raises FabGuardClientError with the refusal code.

        ``attestation`` is the key's attestation where the product asks for one (README: Key attestation):
        a ``tpm2-certify`` or ``se-chain`` object, passed through as it is."""
        request: dict[str, Any] = {"order_id": order_id, "serial": serial, "csr": csr_pem}
        if attestation is not None:
            request["attestation"] = attestation
        body = self._post("/api/v1/units/provision", request, idempotency_key)
        return Issued(body["serial"], body["certificate"], body["chain"], body["replayed"], body.get("identity"))

    def allocate(
        self, order_id: str, serial: str | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Allocate one unit's identities before provisioning it: its serial (drawn from the product's format,
        or ``serial`` for a product without one), MAC addresses and Matter onboarding data. With an
        idempotency key, a resend after a lost answer gets the same identities instead of new ones."""
        request: dict[str, Any] = {"order_id": order_id}
        if serial is not None:
            request["serial"] = serial
        answer: dict[str, Any] = self._post("/api/v1/units/allocate", request, idempotency_key)
        return answer

    def fetch_firmware(self, order_id: str, serial: str, release_id: str) -> bytes:
        """One unit's encrypted firmware package (only that unit's key opens it)."""
        response = self._http.post(
            "/api/v1/firmware/fetch", json={"order_id": order_id, "serial": serial, "release_id": release_id}
        )
        _raise_for(response)
        return response.content

    def provision_batch(
        self,
        order_id: str,
        units: list[tuple[str, str]] | list[tuple[str, str, dict[str, Any] | None]],
        *,
        idempotency_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Many units at once: ``units`` is a list of (serial, csr_pem) or (serial, csr_pem, attestation);
        each result is decided alone."""
        body = {"order_id": order_id, "units": [_batch_unit(*u) for u in units]}
        results: list[dict[str, Any]] = self._post("/api/v1/units/provision-batch", body, idempotency_key)["results"]
        return results


def _batch_unit(serial: str, csr_pem: str, attestation: dict[str, Any] | None = None) -> dict[str, Any]:
    unit: dict[str, Any] = {"serial": serial, "csr": csr_pem}
    if attestation is not None:
        unit["attestation"] = attestation
    return unit


def tls_context(credentials: Credentials) -> ssl.SSLContext:
    """The fixture's mutual-TLS context: its key and certificate, and the CA that names the server."""
    ctx = ssl.create_default_context(cafile=str(credentials.ca))
    ctx.load_cert_chain(str(credentials.cert), str(credentials.key))
    return ctx


def _busy(response: httpx.Response) -> bool:
    """Nothing done yet, and the same request may be sent again: a 503, or the key still at work."""
    if response.status_code == 503:
        return True
    if response.status_code != 409:
        return False
    try:
        return bool(response.json()["error"]["code"] == _IN_PROGRESS)
    except (ValueError, KeyError, TypeError):
        return False


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:  # an HTTP date: not worth parsing for a wait of seconds
        return 0.0
