"""An instance: one data directory holding configuration, encrypted keys, certificates and (by default) the database."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.domain.errors import ConfigurationError
from fabguard.pki import profiles
from fabguard.pki.keys import (
    SigningKey,
    new_signing_key,
    passphrase_from_env,
    pin_from_env,
    read_encrypted_key,
    write_encrypted_key,
)
from fabguard.service.settings import Limits
from fabguard.store.db import Database, sqlite_url
from fabguard.store.migrate import upgrade

HOME_ENV = "FABGUARD_HOME"
DATABASE_ENV = "FABGUARD_DATABASE_URL"
CONFIG_NAME = "instance.json"
# The keys an instance holds. The ledger key signs event checkpoints (the ledger issue uses it).
KEY_NAMES = ("root", "issuing", "station", "ledger", "server")
CA_KEYS = ("root", "issuing", "station")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fabguard"


@dataclass(frozen=True)
class InstanceConfig:
    organization: str
    hostnames: tuple[str, ...]
    database_url: str | None
    limits: Limits = field(default_factory=Limits)
    crl_base_url: str = ""
    key_backend: str = "file"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    # Token labels are "<prefix>-<name>", so several instances can share one HSM token.
    key_prefix: str = "fabguard"

    def hsm_label(self, name: str) -> str:
        return f"{self.key_prefix}-{name}"

    def __post_init__(self) -> None:
        if not self.crl_base_url:
            object.__setattr__(self, "crl_base_url", f"https://{self.hostnames[0]}:8443/crl")

    def to_json(self) -> str:
        return json.dumps(
            {
                "organization": self.organization,
                "hostnames": list(self.hostnames),
                "database_url": self.database_url,
                "crl_base_url": self.crl_base_url,
                "key_backend": self.key_backend,
                "pkcs11_module": self.pkcs11_module,
                "pkcs11_token": self.pkcs11_token,
                "key_prefix": self.key_prefix,
                "limits": self.limits.to_dict(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> InstanceConfig:
        data = json.loads(text)
        return cls(
            organization=data["organization"],
            hostnames=tuple(data["hostnames"]),
            database_url=data.get("database_url"),
            limits=Limits.from_dict(data.get("limits", {})),
            crl_base_url=data.get("crl_base_url", ""),
            key_backend=data.get("key_backend", "file"),
            pkcs11_module=data.get("pkcs11_module"),
            pkcs11_token=data.get("pkcs11_token"),
            key_prefix=data.get("key_prefix", "fabguard"),
        )


class Instance:
    """An opened instance. Keys are decrypted on first use and only held in memory."""

    def __init__(
        self,
        home: Path,
        config: InstanceConfig,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock = utcnow,
        database_url: str | None = None,
    ) -> None:
        self.home = home
        self.config = config
        self.limits = config.limits
        self.clock = clock
        self._env = os.environ if env is None else env
        url = database_url or self._env.get(DATABASE_ENV) or config.database_url or sqlite_url(home / "fabguard.db")
        self.db = Database(url)
        self._issuers: dict[str, profiles.Issuer] = {}
        self._keys: dict[str, SigningKey] = {}
        self._hsm_lock = threading.Lock()
        self._hsm_backend: Any = None
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        home: Path,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock = utcnow,
        database_url: str | None = None,
        migrate: bool = True,
    ) -> Instance:
        path = home / CONFIG_NAME
        if not path.exists():
            raise ConfigurationError(f"no FabGuard instance at {home}: run 'fabguard init' first (or set {HOME_ENV})")
        inst = cls(home, InstanceConfig.from_json(path.read_text()), env=env, clock=clock, database_url=database_url)
        if migrate:
            upgrade(inst.db)
            from fabguard.service.authorities import seed

            seed(inst)
        return inst

    def close(self) -> None:
        self.db.dispose()
        if self._hsm_backend is not None:
            self._hsm_backend.close()

    # Certificates and keys
    def cert_path(self, name: str) -> Path:
        return self.home / "ca" / f"{name}.pem"

    def key_path(self, name: str) -> Path:
        return self.home / "keys" / f"{name}.key.pem"

    def certificate(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path(name).read_bytes())

    def passphrase(self) -> bytes:
        """The key passphrase from this instance's environment (never stored, never logged)."""
        return passphrase_from_env(self._env)

    def private_key(self, name: str) -> SigningKey:
        """A file-backed key of this instance, decrypted (for signing only; never written anywhere)."""
        return self.private_key_ref(f"file:{name}")

    def private_key_ref(self, key_ref: str) -> SigningKey:
        """The key a registry entry names: ``file:<name>`` (encrypted PKCS#8) or ``pkcs11:<label>`` (HSM)."""
        with self._lock:
            if key_ref not in self._keys:
                backend, _, name = key_ref.partition(":")
                if backend == "file":
                    self._keys[key_ref] = read_encrypted_key(self.key_path(name), passphrase_from_env(self._env))
                elif backend == "pkcs11":
                    self._keys[key_ref] = self._hsm().load(name)
                else:
                    raise ConfigurationError(f"unknown key reference {key_ref!r}")
            return self._keys[key_ref]

    def key_ref_for(self, name: str) -> str:
        if self.config.key_backend == "pkcs11":
            return f"pkcs11:{self.config.hsm_label(name)}"
        return f"file:{name}"

    def generate_key(self, name: str) -> None:
        """Make a new CA key in this instance's key backend (encrypted file, or non-extractable in the HSM)."""
        if self.config.key_backend == "pkcs11":
            self._hsm().generate(self.config.hsm_label(name))
            return
        path = self.key_path(name)
        if path.exists():
            raise ConfigurationError(f"a key named {name} already exists")
        write_encrypted_key(new_signing_key(), path, passphrase_from_env(self._env))

    def _hsm(self) -> Any:
        from fabguard.pki.pkcs11 import Pkcs11KeyBackend  # type: ignore[import-not-found,unused-ignore]

        with self._hsm_lock:
            if self._hsm_backend is None:
                module, token = self.config.pkcs11_module, self.config.pkcs11_token
                if not module or not token:
                    raise ConfigurationError("this instance has no PKCS#11 module and token configured")
                self._hsm_backend = Pkcs11KeyBackend(module, token, pin_from_env(self._env))
            return self._hsm_backend

    def issuer(self, name: str, session: Any = None) -> profiles.Issuer:
        """A CA of the registry (or, before it is seeded, of the instance files), with its key.

        Inside a transaction, pass its session: taking a second pooled connection while holding the
        write lock could wait on a pool that the lock's waiters have exhausted.
        """
        with self._lock:
            cached = self._issuers.get(name)
        if cached is not None:
            return cached
        cert, key_ref = self._registry_entry(name, session)
        issuer = profiles.Issuer(cert, self.private_key_ref(key_ref))
        with self._lock:
            self._issuers[name] = issuer
        return issuer

    def _registry_entry(self, name: str, session: Any = None) -> tuple[x509.Certificate, str]:
        from fabguard.store.models import CertificateAuthority

        if session is not None:
            row = session.get(CertificateAuthority, name)
        else:
            with self.db.read() as s:
                row = s.get(CertificateAuthority, name)
        if row is not None and row.certificate_pem:
            return x509.load_pem_x509_certificate(row.certificate_pem.encode()), row.key_ref
        if row is None and self.cert_path(name).exists():
            return self.certificate(name), f"file:{name}"
        raise ConfigurationError(f"CA {name} has no certificate yet")

    def root_issuer(self) -> profiles.Issuer:
        return self.issuer("root")

    def crl_url(self, ca: str) -> str:
        """Where the CRL of ``ca`` is published; certificates name it in CRL Distribution Points."""
        return f"{self.config.crl_base_url}/{ca}.crl"

    def chain_pem(self, name: str, session: Any = None) -> list[str]:
        """``name``'s certificate followed by the root, PEM."""
        cert = self.issuer(name, session).certificate
        root = self.certificate("root")
        if cert.issuer == root.subject or cert.issuer == cert.subject:
            parent = root if cert.issuer != cert.subject else cert
        else:  # e.g. a Matter PAI under its PAA
            parent = self._registry_parent(cert, session)
        chain = [cert] if parent is cert else [cert, parent]
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]

    def _registry_parent(self, cert: x509.Certificate, session: Any) -> x509.Certificate:
        from sqlalchemy import select

        from fabguard.store.models import CertificateAuthority

        def search(s: Any) -> x509.Certificate:
            for pem in s.execute(
                select(CertificateAuthority.certificate_pem).where(CertificateAuthority.certificate_pem.is_not(None))
            ).scalars():
                candidate = x509.load_pem_x509_certificate(pem.encode())
                if candidate.subject == cert.issuer:
                    return candidate
            raise ConfigurationError(f"no CA in the registry issued {cert.subject.rfc4514_string()}")

        if session is not None:
            return search(session)
        with self.db.read() as s:
            return search(s)


def init_instance(
    home: Path,
    *,
    organization: str,
    hostnames: tuple[str, ...] = ("127.0.0.1",),
    database_url: str | None = None,
    crl_base_url: str | None = None,
    key_backend: str = "file",
    pkcs11_module: str | None = None,
    pkcs11_token: str | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> InstanceConfig:
    """Create the keys, the CA hierarchy and the configuration of a new instance in ``home``.

    With ``key_backend="pkcs11"`` the CA keys (root, issuing, station) are made inside the HSM token,
    non-extractable; the TLS server key and the Ed25519 ledger key stay in encrypted files.
    """
    if key_backend not in ("file", "pkcs11"):
        raise ConfigurationError(f"unknown key backend {key_backend!r}: file or pkcs11")
    if key_backend == "pkcs11" and not (pkcs11_module and pkcs11_token):
        raise ConfigurationError("the pkcs11 key backend needs --pkcs11-module and --pkcs11-token")
    if (home / CONFIG_NAME).exists():
        raise ConfigurationError(f"{home} already holds a FabGuard instance")
    passphrase = passphrase_from_env(env)
    now = now or utcnow()
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    (home / "ca").mkdir(exist_ok=True)
    config = InstanceConfig(
        organization=organization,
        hostnames=hostnames,
        database_url=database_url,
        crl_base_url=crl_base_url or "",
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
        key_prefix=secrets.token_hex(4),
    )
    ec_keys = {name: new_signing_key() for name in ("server",) + (CA_KEYS if key_backend == "file" else ())}
    keys: dict[str, SigningKey] = dict(ec_keys)
    # Checkpoints are C2SP signed notes, whose standard signature type is Ed25519.
    keys["ledger"] = ed25519.Ed25519PrivateKey.generate()
    ca_keys: dict[str, SigningKey] = {name: ec_keys[name] for name in CA_KEYS if name in ec_keys}
    if key_backend == "pkcs11":
        from fabguard.pki.pkcs11 import Pkcs11KeyBackend  # type: ignore[import-not-found,unused-ignore]

        hsm = Pkcs11KeyBackend(str(pkcs11_module), str(pkcs11_token), pin_from_env(env))
        ca_keys = {name: hsm.generate(config.hsm_label(name)) for name in CA_KEYS}
    keys_for_certs = {**keys, **ca_keys}
    root_crl = f"{config.crl_base_url}/root.crl"
    root = profiles.self_signed_root(keys_for_certs["root"], organization, f"{organization} FabGuard Root CA", now)
    issuing = profiles.intermediate_ca(
        root,
        keys_for_certs["issuing"].public_key(),
        organization,
        f"{organization} Device Issuing CA",
        now,
        crl_url=root_crl,
    )
    station = profiles.intermediate_ca(
        root, keys_for_certs["station"].public_key(), organization, f"{organization} Station CA", now, crl_url=root_crl
    )
    station_issuer = profiles.Issuer(station, keys_for_certs["station"])
    server = profiles.server_certificate(station_issuer, ec_keys["server"].public_key(), organization, hostnames, now)
    certs = {"root": root.certificate, "issuing": issuing, "station": station, "server": server}
    for name, cert in certs.items():
        (home / "ca" / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (home / "ca" / "server-chain.pem").write_bytes(
        server.public_bytes(serialization.Encoding.PEM) + station.public_bytes(serialization.Encoding.PEM)
    )
    for name, key in keys.items():
        write_encrypted_key(key, home / "keys" / f"{name}.key.pem", passphrase)
    (home / CONFIG_NAME).write_text(config.to_json())
    return config
