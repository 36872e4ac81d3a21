"""Making a new instance (keys, CA hierarchy, configuration and certificate files) and seeding its CA registry."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import select

from fabguard.domain.errors import ConfigurationError
from fabguard.pki import ceremony, profiles
from fabguard.pki.keys import SigningKey, new_signing_key, passphrase_from_env, write_encrypted_key
from fabguard.pki.keystore import KEY_BACKENDS, KeyStore
from fabguard.service.core.ca_registry import CaRegistry
from fabguard.service.core.config import CONFIG_NAME, InstanceConfig, resolve_database_url
from fabguard.store.db import Database, require_driver
from fabguard.store.migrate import upgrade
from fabguard.store.models import CertificateAuthority

# The keys an instance holds. The ledger key signs event checkpoints (the ledger issue uses it).
KEY_NAMES = ("root", "issuing", "station", "ledger", "server")
CA_KEYS = ("root", "issuing", "station")
# With an offline root (``init --offline-root``) the root's key is made at a ceremony, never here.
OFFLINE_CA_KEYS = ("issuing", "station")
# The firmware manifest signing key (service/firmware/sealing_keys), made here so devices can pin it
# before the first release and no read ever makes it; it lives in the HSM with the CA keys when there is one.
FIRMWARE_KEY = "firmware"


def init_instance(
    home: Path,
    *,
    organization: str,
    hostnames: tuple[str, ...] = ("127.0.0.1",),
    database_url: str | None = None,
    crl_base_url: str | None = None,
    public_url: str | None = None,
    pki_url: str | None = None,
    key_backend: str = "file",
    pkcs11_module: str | None = None,
    pkcs11_token: str | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    offline_root: bool = False,
) -> InstanceConfig:
    """Create the keys, the CA hierarchy and the configuration of a new instance in ``home``.

    ``public_url`` (the HTTPS API's base), ``pki_url`` (the plain-HTTP base where CRLs and CA certificates
    are published) and ``crl_base_url`` (CRLs set apart from it) default from the first host name.
    With ``key_backend="pkcs11"`` the CA keys (root, issuing, station) are made inside the HSM token,
    non-extractable; the TLS server key and the Ed25519 ledger key stay in encrypted files.
    With ``offline_root`` no root key is made here: the issuing and station CAs are registered ``pending``
    with their CSRs, for a ceremony to sign (``service.authority.ceremony``; docs/ceremony.md).
    """
    if key_backend not in KEY_BACKENDS:
        raise ConfigurationError(f"unknown key backend {key_backend!r}: file or pkcs11")
    if key_backend == "pkcs11" and not (pkcs11_module and pkcs11_token):
        raise ConfigurationError("the pkcs11 key backend needs --pkcs11-module and --pkcs11-token")
    if (home / CONFIG_NAME).exists():
        raise ConfigurationError(f"{home} already holds a FabGuard instance")
    config = InstanceConfig(
        organization=organization,
        hostnames=hostnames,
        database_url=database_url,
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
        key_prefix=secrets.token_hex(4),
    )
    config = _with_published_urls(config, public_url, pki_url, crl_base_url)
    require_driver(resolve_database_url(home, config, env))  # before any key or file is written
    passphrase = passphrase_from_env(env)
    now = now or datetime.now(UTC)
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    (home / "ca").mkdir(exist_ok=True)
    ca_names = OFFLINE_CA_KEYS if offline_root else CA_KEYS
    ec_keys = {name: new_signing_key() for name in ("server",) + (ca_names if key_backend == "file" else ())}
    keys: dict[str, SigningKey] = dict(ec_keys)
    if key_backend == "file":
        keys[FIRMWARE_KEY] = new_signing_key()
    # Checkpoints are C2SP signed notes, whose standard signature type is Ed25519.
    keys["ledger"] = ed25519.Ed25519PrivateKey.generate()
    ca_keys: dict[str, SigningKey] = {name: ec_keys[name] for name in ca_names if name in ec_keys}
    csrs: dict[str, x509.CertificateSigningRequest] = {}
    store = config.key_store(home, env)
    try:
        if key_backend == "pkcs11":
            ca_keys = {name: store.load(store.generate(name)) for name in ca_names}
            store.generate(FIRMWARE_KEY)
        if offline_root:
            csrs = {
                name: ceremony.ca_csr(ca_keys[name], organization, ca_common_name(organization, name))
                for name in ca_names
            }
        else:
            _write_hierarchy(home, config, {**keys, **ca_keys}, ec_keys["server"], now)
    finally:
        store.close()
    for name, key in keys.items():
        write_encrypted_key(key, store.path(name), passphrase)
    _create_schema(home, config, env, now)  # before the configuration, whose presence says "an instance"
    if offline_root:
        _register_pending(home, config, env, csrs, now)
    (home / CONFIG_NAME).write_text(config.to_json())
    return config


def ca_common_name(organization: str, name: str) -> str:
    """The common name ``init`` gives the root, issuing and station CAs."""
    return (
        f"{organization} " + {"root": "FabGuard Root CA", "issuing": "Device Issuing CA", "station": "Station CA"}[name]
    )


def _register_pending(
    home: Path,
    config: InstanceConfig,
    env: Mapping[str, str] | None,
    csrs: Mapping[str, x509.CertificateSigningRequest],
    now: datetime,
) -> None:
    """Register the CAs of an offline-root instance as ``pending``, each with its CSR for the ceremony."""
    db = Database(resolve_database_url(home, config, env))
    store = config.key_store(home, env)
    try:
        with db.transaction() as s:
            for name, csr in csrs.items():
                s.add(
                    CertificateAuthority(
                        name=name,
                        role=name,
                        state="pending",
                        key_ref=store.ref_for(name),
                        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
                        created_at=now,
                    )
                )
    finally:
        store.close()
        db.dispose()


def _create_schema(home: Path, config: InstanceConfig, env: Mapping[str, str] | None, now: datetime) -> None:
    """Give a new instance's database the code's schema and register its CAs: the one implicit migration
    (every later one is asked for: ``fabguard db upgrade``)."""
    db = Database(resolve_database_url(home, config, env))
    if db.is_sqlite and db.url.database:
        # Made empty and the owner's alone before SQLite opens it: its WAL files take the file's mode.
        Path(db.url.database).touch(mode=0o600)
    store = config.key_store(home, env)
    try:
        upgrade(db)
        cas = CaRegistry(db, store, home / "ca", config.crl_base_url, config.ca_issuers_base_url)
        seed_registry(db, cas, store, lambda: now)
    finally:
        store.close()
        db.dispose()


def _with_published_urls(
    config: InstanceConfig, public_url: str | None, pki_url: str | None, crl_url: str | None
) -> InstanceConfig:
    """``config`` with the URLs ``init`` was given; an old-style ``--crl-url .../crl`` alone names the PKI URL too."""
    if crl_url is not None and pki_url is None and crl_url.rstrip("/").endswith("/crl"):
        pki_url, crl_url = crl_url.rstrip("/").removesuffix("/crl"), None
    return config.with_urls(public_url=public_url, pki_url=pki_url, crl_url=crl_url)


def _write_hierarchy(
    home: Path,
    config: InstanceConfig,
    keys: Mapping[str, SigningKey],
    server_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> None:
    """Sign the root, issuing, station and TLS server certificates and write them to ``<home>/ca``."""
    organization = config.organization
    root_crl, root_crt = f"{config.crl_base_url}/root.crl", f"{config.ca_issuers_base_url}/root.crt"
    root = profiles.self_signed_root(keys["root"], organization, ca_common_name(organization, "root"), now)
    issuing = profiles.intermediate_ca(
        root,
        keys["issuing"].public_key(),
        organization,
        ca_common_name(organization, "issuing"),
        now,
        crl_url=root_crl,
        ca_issuers_url=root_crt,
        ocsp_url=config.ocsp_url,
    )
    station = profiles.intermediate_ca(
        root,
        keys["station"].public_key(),
        organization,
        ca_common_name(organization, "station"),
        now,
        crl_url=root_crl,
        ca_issuers_url=root_crt,
        ocsp_url=config.ocsp_url,
    )
    certs = {"root": root.certificate, "issuing": issuing, "station": station}
    write_ca_files(home, config, certs, profiles.Issuer(station, keys["station"]), server_key, now)


def write_ca_files(
    home: Path,
    config: InstanceConfig,
    certs: Mapping[str, x509.Certificate],
    station: profiles.Issuer | None,
    server_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> None:
    """Write the CA certificates to ``<home>/ca``, and with the station CA the TLS server's certificate."""
    for name, cert in certs.items():
        (home / "ca" / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if station is None:
        return
    server = profiles.server_certificate(station, server_key.public_key(), config.organization, config.hostnames, now)
    (home / "ca" / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (home / "ca" / "server-chain.pem").write_bytes(
        server.public_bytes(serialization.Encoding.PEM) + station.certificate.public_bytes(serialization.Encoding.PEM)
    )


def seed_registry(db: Database, cas: CaRegistry, keys: KeyStore, clock: Callable[[], datetime]) -> None:
    """Register the CAs that ``init`` made (idempotent; runs when an instance is opened)."""
    with db.transaction() as s:
        known = set(s.execute(select(CertificateAuthority.name)).scalars())
        for name in CA_KEYS:
            if name in known or not cas.cert_path(name).exists():
                continue
            cert = cas.certificate(name)
            s.add(
                CertificateAuthority(
                    name=name,
                    role=name,
                    state="active",
                    key_ref=keys.ref_for(name),
                    certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                    cert_serial=format(cert.serial_number, "x"),
                    created_at=clock(),
                )
            )
