"""The HTTPS listener's certificate: the operator's files named in ``instance.json`` (read and checked), or the
one ``init`` made under the station CA. Fixtures' client certificates are verified against FabGuard's own
CAs whichever it is (``api.server.write_client_trust``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import InvalidRequest
from fabguard.pki.server_tls import (
    UNREADABLE,
    ServerCredentials,
    check_chain,
    check_credentials,
    parse_chain,
    parse_key,
    trust_anchors,
)
from fabguard.service.core.config import InstanceConfig, load_config

STATION_CHAIN = Path("ca") / "server-chain.pem"
STATION_KEY = Path("keys") / "server.key.pem"


@dataclass(frozen=True)
class OperatorFiles:
    """Where the operator's certificate chain, key (a PEM file, or a PKCS#11 URI and module), the key's
    passphrase and the CA certificates for clients are (paths absolute)."""

    cert: Path
    key: Path | None
    passphrase_file: Path | None = None
    ca: Path | None = None
    pkcs11_key: str | None = None
    pkcs11_module: str | None = None

    @classmethod
    def named(
        cls,
        cert: Path | str,
        key: Path | str | None,
        passphrase_file: Path | str | None = None,
        ca: Path | str | None = None,
        *,
        pkcs11_key: str | None = None,
        pkcs11_module: str | None = None,
    ) -> OperatorFiles:
        """The files named, checked for form: a key file or a PKCS#11 key (with its module), not both."""
        if (key is None) == (pkcs11_key is None):
            raise InvalidRequest("name the server's key: a PEM file or a PKCS#11 URI, one of them")
        if pkcs11_key is not None and (not pkcs11_key.startswith("pkcs11:") or not pkcs11_module):
            raise InvalidRequest("a PKCS#11 key is a pkcs11: URI (RFC 7512), with the module that reaches its token")

        def absolute(p: Path | str | None) -> Path | None:
            return None if p is None else Path(p).expanduser().absolute()

        return cls(
            cert=Path(cert).expanduser().absolute(),
            key=absolute(key),
            passphrase_file=absolute(passphrase_file),
            ca=absolute(ca),
            pkcs11_key=pkcs11_key,
            pkcs11_module=pkcs11_module,
        )

    def passphrase(self) -> bytes | None:
        if self.passphrase_file is None:
            return None
        text = _read(self.passphrase_file, "the key passphrase file").decode("utf-8", "replace").strip()
        if not text:
            raise InvalidRequest(f"the key passphrase file {self.passphrase_file} is empty", code=UNREADABLE)
        return text.encode("utf-8")


def operator_files(config: InstanceConfig) -> OperatorFiles | None:
    """The operator's files ``config`` names, or None: the listener uses the station CA's certificate."""
    if not config.tls_cert or not (config.tls_key or config.tls_pkcs11_key):
        return None
    return OperatorFiles.named(
        config.tls_cert,
        config.tls_key,
        config.tls_key_passphrase_file,
        config.tls_ca,
        pkcs11_key=config.tls_pkcs11_key,
        pkcs11_module=config.tls_pkcs11_module or config.pkcs11_module,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {what} {path}: {exc.strerror}", code=UNREADABLE) from None


def read_credentials(files: OperatorFiles) -> ServerCredentials:
    """The operator's chain and key, read now and checked: readable, the key opening, the leaf the key's,
    the chain in order (a key in an HSM is checked where it is loaded); the CA file, if named, readable (``server_tls_unreadable``,
    ``certificate_key_mismatch``, ``certificate_invalid``)."""
    chain = parse_chain(_read(files.cert, "the certificate file"), str(files.cert))
    if files.key is None:  # in the HSM: the TLS context checks that it matches (api.tls_pkcs11)
        credentials = check_chain(chain, str(files.cert))
    else:
        key = parse_key(_read(files.key, "the key file"), files.passphrase(), str(files.key))
        credentials = check_credentials(chain, key, str(files.cert))
    if files.ca is not None:
        parse_chain(_read(files.ca, "the CA file"), str(files.ca))
    return credentials


def client_trust_pems(files: OperatorFiles) -> list[str]:
    """The CA certificates clients should trust for the operator's certificate: the CA file's, else the
    self-signed ones at the end of the chain (none: clients need the operator's CA from elsewhere)."""
    if files.ca is not None:
        certs = parse_chain(_read(files.ca, "the CA file"), str(files.ca))
    else:
        certs = trust_anchors(parse_chain(_read(files.cert, "the certificate file"), str(files.cert)))
    return [c.public_bytes(serialization.Encoding.PEM).decode() for c in certs]


def server_trust_pems(home: Path, station_chain: list[str]) -> list[str]:
    """What a fixture is handed at enrolment to verify this server: the station chain (the certificate
    ``init`` made chains to it) and, if the operator supplies the certificate, the operator's CA (as
    ``instance.json`` names it now: a running server takes a new one on SIGHUP, without a restart)."""
    files = operator_files(load_config(home))
    return station_chain + (client_trust_pems(files) if files is not None else [])


def set_operator_tls(home: Path, files: OperatorFiles | None) -> tuple[InstanceConfig, ServerCredentials | None]:
    """Name the operator's files in ``home``'s configuration after checking them (nothing changes on a
    refusal), or with None go back to the station CA's certificate. A running server takes them on SIGHUP."""
    credentials = read_credentials(files) if files is not None else None
    config = dataclasses.replace(
        load_config(home),
        tls_cert=str(files.cert) if files else None,
        tls_key=str(files.key) if files and files.key else None,
        tls_pkcs11_key=files.pkcs11_key if files else None,
        tls_pkcs11_module=files.pkcs11_module if files else None,
        tls_key_passphrase_file=str(files.passphrase_file) if files and files.passphrase_file else None,
        tls_ca=str(files.ca) if files and files.ca else None,
    )
    config.save(home)
    return config, credentials
