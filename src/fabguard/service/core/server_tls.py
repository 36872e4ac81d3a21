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
    """Where the operator's certificate chain, key, key passphrase and CA certificates are (absolute)."""

    cert: Path
    key: Path
    passphrase_file: Path | None = None
    ca: Path | None = None

    @classmethod
    def named(
        cls, cert: Path | str, key: Path | str, passphrase_file: Path | str | None = None, ca: Path | str | None = None
    ) -> OperatorFiles:
        def absolute(p: Path | str | None) -> Path | None:
            return None if p is None else Path(p).expanduser().absolute()

        return cls(
            cert=Path(cert).expanduser().absolute(),
            key=Path(key).expanduser().absolute(),
            passphrase_file=absolute(passphrase_file),
            ca=absolute(ca),
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
    if not config.tls_cert or not config.tls_key:
        return None
    return OperatorFiles.named(config.tls_cert, config.tls_key, config.tls_key_passphrase_file, config.tls_ca)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {what} {path}: {exc.strerror}", code=UNREADABLE) from None


def read_credentials(files: OperatorFiles) -> ServerCredentials:
    """The operator's chain and key, read now and checked: readable, the key opening, the leaf the key's,
    the chain in order; the CA file, if named, readable (``server_tls_unreadable``,
    ``certificate_key_mismatch``, ``certificate_invalid``)."""
    chain = parse_chain(_read(files.cert, "the certificate file"), str(files.cert))
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
        tls_key=str(files.key) if files else None,
        tls_key_passphrase_file=str(files.passphrase_file) if files and files.passphrase_file else None,
        tls_ca=str(files.ca) if files and files.ca else None,
    )
    config.save(home)
    return config, credentials
