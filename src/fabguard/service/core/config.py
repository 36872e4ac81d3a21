"""An instance's configuration: ``instance.json`` in its home directory, and where that home is."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fabguard.domain.errors import ConfigurationError
from fabguard.pki.keystore import KeyStore
from fabguard.service.core.published_urls import published_url, url_host
from fabguard.service.core.settings import Limits
from fabguard.store.db import sqlite_url

HOME_ENV = "FABGUARD_HOME"
DATABASE_ENV = "FABGUARD_DATABASE_URL"
CONFIG_NAME = "instance.json"


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
    # Where CRLs are named in certificates (CRL Distribution Points): ``<pki_url>/crl`` unless set apart
    # (``init --crl-url``, kept from before there was a PKI URL).
    crl_base_url: str = ""
    key_backend: str = "file"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    # Token labels are "<prefix>-<name>" (KeyStore.label), so several instances can share one HSM token.
    key_prefix: str = "fabguard"
    # The HTTPS API's base as fixtures and EST clients reach it (``fabguard serve``'s --port).
    public_url: str = ""
    # The plain-HTTP publication base (``fabguard serve --http-port``): relying parties fetch CRLs at
    # ``<pki_url>/crl/<ca>.crl``, CA certificates at ``<pki_url>/ca/<ca>.crt`` (AIA caIssuers) and OCSP
    # answers at ``<pki_url>/ocsp`` (AIA OCSP).
    pki_url: str = ""
    # The HTTPS listener's own certificate, if the operator supplies one (``fabguard config tls``): a PEM
    # chain, leaf first, and its key (encrypted with the passphrase in ``tls_key_passphrase_file``, or
    # not); ``tls_ca`` the CA certificates clients should trust for it, handed to fixtures at enrolment.
    # None: the certificate ``init`` made under the station CA (``ca/server-chain.pem``).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_key_passphrase_file: str | None = None
    tls_ca: str | None = None
    # Or the key in an HSM: a PKCS#11 URI (pkcs11:token=...;object=...), through ``tls_pkcs11_module`` (else
    # ``pkcs11_module``), the PIN from FABGUARD_PKCS11_PIN[_FILE]; served through OpenSSL's pkcs11 engine.
    tls_pkcs11_key: str | None = None
    tls_pkcs11_module: str | None = None

    def __post_init__(self) -> None:
        host = url_host(self.hostnames[0])
        if not self.public_url:
            object.__setattr__(self, "public_url", f"https://{host}:8443")
        if not self.pki_url:
            # An instance from before the PKI URL named only its CRL base, ``<base>/crl``: its CA
            # certificates are published beside its CRLs.
            legacy = self.crl_base_url.rstrip("/")
            derived = legacy.removesuffix("/crl") if legacy.endswith("/crl") else ""
            object.__setattr__(self, "pki_url", derived or f"http://{host}:8080")
        if not self.crl_base_url:
            object.__setattr__(self, "crl_base_url", f"{self.pki_url}/crl")

    @property
    def ca_issuers_base_url(self) -> str:
        """Where CA certificates are published (DER), named in certificates' Authority Information Access."""
        return f"{self.pki_url}/ca"

    @property
    def ocsp_url(self) -> str:
        """Where the OCSP responder answers (RFC 6960 A.1: GET and POST), named in certificates' Authority
        Information Access."""
        return f"{self.pki_url}/ocsp"

    def with_urls(
        self, *, public_url: str | None = None, pki_url: str | None = None, crl_url: str | None = None
    ) -> InstanceConfig:
        """This configuration with new published URLs (checked); a new PKI URL also moves the CRLs under it
        unless ``crl_url`` sets them apart."""
        config = self
        if public_url is not None:
            config = dataclasses.replace(config, public_url=published_url(public_url, "public URL", schemes=("https",)))
        if pki_url is not None:
            pki = published_url(pki_url, "PKI URL")
            config = dataclasses.replace(config, pki_url=pki, crl_base_url=f"{pki}/crl")
        if crl_url is not None:
            config = dataclasses.replace(config, crl_base_url=published_url(crl_url, "CRL URL"))
        return config

    def to_json(self) -> str:
        return json.dumps(
            {
                "organization": self.organization,
                "hostnames": list(self.hostnames),
                "database_url": self.database_url,
                "public_url": self.public_url,
                "pki_url": self.pki_url,
                "crl_base_url": self.crl_base_url,
                "key_backend": self.key_backend,
                "pkcs11_module": self.pkcs11_module,
                "pkcs11_token": self.pkcs11_token,
                "key_prefix": self.key_prefix,
                "limits": self.limits.to_dict(),
                "tls_cert": self.tls_cert,
                "tls_key": self.tls_key,
                "tls_key_passphrase_file": self.tls_key_passphrase_file,
                "tls_ca": self.tls_ca,
                "tls_pkcs11_key": self.tls_pkcs11_key,
                "tls_pkcs11_module": self.tls_pkcs11_module,
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
            public_url=data.get("public_url", ""),
            pki_url=data.get("pki_url", ""),
            tls_cert=data.get("tls_cert"),
            tls_key=data.get("tls_key"),
            tls_key_passphrase_file=data.get("tls_key_passphrase_file"),
            tls_ca=data.get("tls_ca"),
            tls_pkcs11_key=data.get("tls_pkcs11_key"),
            tls_pkcs11_module=data.get("tls_pkcs11_module"),
        )

    def save(self, home: Path) -> None:
        """Write this configuration as ``home``'s ``instance.json`` (whole, then renamed over the old one)."""
        staged = home / f"{CONFIG_NAME}.new"
        staged.write_text(self.to_json())
        os.replace(staged, home / CONFIG_NAME)

    def key_store(self, home: Path, env: Mapping[str, str] | None = None) -> KeyStore:
        """The key store this configuration names, over ``home``'s ``keys/`` directory."""
        return KeyStore(
            home / "keys",
            backend=self.key_backend,
            pkcs11_module=self.pkcs11_module,
            pkcs11_token=self.pkcs11_token,
            label_prefix=self.key_prefix,
            env=env,
        )


def resolve_database_url(
    home: Path, config: InstanceConfig, env: Mapping[str, str] | None = None, override: str | None = None
) -> str:
    """The database an instance uses: ``override``, else $FABGUARD_DATABASE_URL, else its configuration's,
    else the SQLite file in its home."""
    env = os.environ if env is None else env
    return override or env.get(DATABASE_ENV) or config.database_url or sqlite_url(home / "fabguard.db")


def load_config(home: Path) -> InstanceConfig:
    """The configuration in ``home``'s ``instance.json``."""
    path = home / CONFIG_NAME
    if not path.exists():
        raise ConfigurationError(f"no FabGuard instance at {home}: run 'fabguard init' first (or set {HOME_ENV})")
    return InstanceConfig.from_json(path.read_text())


def set_published_urls(
    home: Path, *, public_url: str | None = None, pki_url: str | None = None, crl_url: str | None = None
) -> InstanceConfig:
    """Change the URLs ``home``'s instance publishes (checked first; nothing changes on a refusal).

    Certificates signed from then on name the new ones (a running server reads them when it starts);
    certificates already signed keep naming the old ones, and every listener still serves ``/crl/`` and
    ``/ca/`` under whatever host and port it runs on.
    """
    config = load_config(home).with_urls(public_url=public_url, pki_url=pki_url, crl_url=crl_url)
    config.save(home)
    return config
