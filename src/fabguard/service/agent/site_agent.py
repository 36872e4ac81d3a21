"""An offline site agent: a FabGuard instance of its own, made from a quota lease (issue 18).

``prepare_agent`` makes the agent's keys where they will stay (its issuing key in an encrypted file or
non-extractable in its PKCS#11 token, its TLS key, its Ed25519 ledger key) and the request the central
server answers with a lease. ``init_agent`` checks the lease against those keys and turns the home into an
instance whose one order is the lease: quota N, valid until the lease ends, signed by the agent CA. The
agent then provisions with the whole provisioning path unchanged (fixture mTLS, the test gate, key
uniqueness within what it knows, the atomic quota check), so it stops at the lease's N units
(``quota_exhausted``) and at its end (``order_expired``). It holds no key of the central server: the root
and the station CA are certificates only (``external:`` key references), and sign nothing here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import select, update

from fabguard.domain.errors import ConfigurationError
from fabguard.domain.values import OrderState
from fabguard.ledger.checkpoint import verifier_key
from fabguard.ledger.lease import Lease, LeaseError, open_bundle
from fabguard.ledger.lease_end import FINISHED
from fabguard.pki import agent_status, profiles
from fabguard.pki.keys import SigningKey, new_signing_key, passphrase_from_env, read_encrypted_key, write_encrypted_key
from fabguard.service.agent.sync import SyncPackage
from fabguard.service.core.ca_registry import EXTERNAL_KEY, PUBLISHED_ELSEWHERE
from fabguard.service.core.config import CONFIG_NAME, InstanceConfig, resolve_database_url
from fabguard.service.core.instance import Clock, Instance, utcnow
from fabguard.service.ledger import merkle_log
from fabguard.store.db import sqlite_url
from fabguard.store.eventlog import append_event
from fabguard.store.models import CertificateAuthority, Event, Fixture, Order, Product, Site, Unit

PENDING_NAME = "agent-pending.json"
STATUS_SIGNER_NAME = "status-signer.pem"  # in the CA directory: the central status signer the agent CA certified
LEASE_NAME = "lease.json"
_PEM = serialization.Encoding.PEM


def prepare_agent(
    home: Path,
    *,
    site_id: str,
    hostnames: tuple[str, ...] = ("127.0.0.1",),
    key_backend: str = "file",
    pkcs11_module: str | None = None,
    pkcs11_token: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Make the agent's keys in ``home`` and return its lease request (JSON, public parts only)."""
    if (home / CONFIG_NAME).exists() or (home / PENDING_NAME).exists():
        raise ConfigurationError(f"{home} already holds a FabGuard instance or agent")
    passphrase = passphrase_from_env(env)
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    config = InstanceConfig(
        organization="(from the lease)",
        hostnames=hostnames,
        database_url=None,
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
        key_prefix=secrets.token_hex(4),
    )
    store = config.key_store(home, env)
    try:
        issuing = store.load(store.generate("issuing"))
        server, ledger = new_signing_key(), ed25519.Ed25519PrivateKey.generate()
        write_encrypted_key(server, store.path("server"), passphrase)
        write_encrypted_key(ledger, store.path("ledger"), passphrase)
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"FabGuard site agent at {site_id}")])
        csrs = {
            label: x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, profiles.hash_for(key))
            for label, key in (("ca_csr", issuing), ("server_csr", server))
        }
    finally:
        store.close()
    (home / PENDING_NAME).write_text(config.to_json())
    request = {
        "site_id": site_id,
        "hostnames": list(hostnames),
        **{label: csr.public_bytes(_PEM).decode() for label, csr in csrs.items()},
        "ledger_key": verifier_key(f"{hostnames[0]}/fabguard-ledger", ledger.public_key()),
    }
    return json.dumps(request, indent=2)


def init_agent(home: Path, bundle_text: str, *, env: Mapping[str, str] | None = None, clock: Clock = utcnow) -> Lease:
    """Check the lease against the keys ``prepare_agent`` made and make ``home`` the agent's instance."""
    pending = home / PENDING_NAME
    if not pending.exists():
        raise ConfigurationError(f"{home} holds no prepared agent: run 'fabguard agent prepare' first")
    try:
        bundle = json.loads(bundle_text)
    except ValueError:
        raise LeaseError("the lease file is not JSON") from None
    lease = open_bundle(bundle)
    config = InstanceConfig.from_json(pending.read_text())
    store = config.key_store(home, env)
    try:
        certs = {
            name: x509.load_pem_x509_certificate(str(pem).encode()) for name, pem in bundle["certificates"].items()
        }
        _check_bundle(
            lease,
            certs,
            store.load(store.ref_for("issuing")),
            store.path("server"),
            store.path("ledger"),
            config,
            passphrase_from_env(env),
        )
        signer = _status_signer(bundle, certs["agent_ca"], store.load(store.ref_for("issuing")), clock())
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LeaseError(f"malformed lease bundle: {exc}") from None
    finally:
        store.close()
    ca = home / "ca"
    ca.mkdir(exist_ok=True)
    files = {
        "root": certs["root"],
        "station": certs["station"],
        "issuing": certs["agent_ca"],
        "server": certs["server"],
    }
    for name, cert in files.items():
        (ca / f"{name}.pem").write_bytes(cert.public_bytes(_PEM))
    (ca / "server-chain.pem").write_bytes(certs["server"].public_bytes(_PEM) + certs["station"].public_bytes(_PEM))
    if signer is not None:
        _publish_at_central(ca, bundle["publication"], signer)
    (home / LEASE_NAME).write_text(bundle_text)
    (home / CONFIG_NAME).write_text(replace(config, organization=str(bundle["organization"])).to_json())
    pending.unlink()
    if resolve_database_url(home, config, env) == sqlite_url(home / "fabguard.db"):
        # The agent's own SQLite file, the owner's alone as init makes it (its WAL files take its mode).
        (home / "fabguard.db").touch(mode=0o600)
    inst = Instance.open(home, env=env, clock=clock, migrate=True)  # a new instance: its schema is made here
    try:
        _seed_agent(inst, lease, bundle)
    finally:
        inst.close()
    return lease


def _status_signer(
    bundle: Mapping[str, object], agent_ca: x509.Certificate, issuing: SigningKey, now: datetime
) -> x509.Certificate | None:
    """The agent CA's delegation to the central server's status signer the lease names (ADR 0020); None for a
    lease from a server that names none (its units then name this agent's URLs, as before)."""
    publication = bundle.get("publication")
    if publication is None:
        return None
    assert isinstance(publication, dict)
    key = serialization.load_pem_public_key(str(publication["status_key"]).encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise LeaseError("the lease's status key is not one a certificate can name")
    return agent_status.status_signer_certificate(profiles.Issuer(agent_ca, issuing), key, now)


def _publish_at_central(ca: Path, publication: object, signer: x509.Certificate) -> None:
    """Make the units this agent issues name the central server's URLs for its CA, and the central status
    signer as their CRL's issuer: the central server answers for them for their whole life once synced."""
    assert isinstance(publication, dict)
    (ca / STATUS_SIGNER_NAME).write_bytes(signer.public_bytes(_PEM))
    published = {k: str(publication[k]) for k in ("crl_url", "ca_issuers_url", "ocsp_url")}
    (ca / PUBLISHED_ELSEWHERE).write_text(
        json.dumps({"issuing": {**published, "crl_issuer_certificate": STATUS_SIGNER_NAME}}, indent=2)
    )


def _check_bundle(
    lease: Lease,
    certs: Mapping[str, x509.Certificate],
    issuing: SigningKey,
    server_path: Path,
    ledger_path: Path,
    config: InstanceConfig,
    passphrase: bytes,
) -> None:
    agent_ca, root = certs["agent_ca"], certs["root"]
    if hashlib.sha256(agent_ca.public_bytes(serialization.Encoding.DER)).hexdigest() != lease.agent_ca_sha256:
        raise LeaseError("the agent CA certificate is not the one the lease names")
    try:
        agent_ca.verify_directly_issued_by(root)
        certs["server"].verify_directly_issued_by(certs["station"])
        certs["station"].verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise LeaseError("the lease's certificates do not chain to its root") from None
    if agent_ca.public_key() != issuing.public_key():  # the key in a file or in the PKCS#11 token
        raise LeaseError("the lease's agent CA is not for this agent's issuing key")
    if certs["server"].public_key() != read_encrypted_key(server_path, passphrase).public_key():
        raise LeaseError("the lease's server certificate is not for this agent's TLS key")
    ledger = read_encrypted_key(ledger_path, passphrase)
    assert isinstance(ledger, ed25519.Ed25519PrivateKey)
    if lease.agent_ledger_key != verifier_key(f"{config.hostnames[0]}/fabguard-ledger", ledger.public_key()):
        raise LeaseError("the lease names another agent's ledger key")


def _seed_agent(inst: Instance, lease: Lease, bundle: Mapping[str, object]) -> None:
    """The lease's product, site, fixtures and order, in one transaction with the event that says so."""
    product = bundle["product"]
    site = bundle["site"]
    assert isinstance(product, dict) and isinstance(site, dict) and isinstance(bundle["fixtures"], list)
    now = inst.clock()
    with inst.db.transaction() as s:
        s.execute(
            update(CertificateAuthority)
            .where(CertificateAuthority.name.in_(("root", "station")))
            .values(key_ref=EXTERNAL_KEY + CertificateAuthority.name)
        )
        s.add(
            Product(
                id=product["id"],
                name=product["name"],
                key_types=",".join(product["key_types"]),
                cert_lifetime_days=product["cert_lifetime_days"],
                created_at=now,
            )
        )
        s.add(Site(id=site["id"], name=site["name"], created_at=now))
        s.flush()
        for f in bundle["fixtures"]:
            s.add(
                Fixture(
                    id=f["id"],
                    site_id=f["site_id"],
                    created_at=now,
                    enrolled_at=_time(f["enrolled_at"]),
                    cert_fingerprint=f["cert_fingerprint"],
                    cert_serial=f["cert_serial"],
                    cert_not_after=_time(f["cert_not_after"]),
                )
            )
        s.add(
            Order(
                id=lease.order_id,
                product_id=lease.product_id,
                site_id=lease.site_id,
                quota=lease.units,
                used=0,
                state=OrderState.ACTIVE.value,
                valid_from=lease.issued_at,
                valid_until=lease.not_after,
                created_at=now,
                created_by=f"lease:{lease.lease_id}",
                issuing_ca="issuing",
            )
        )
        s.flush()
        append_event(
            s,
            "agent.initialized",
            at=now,
            actor=f"lease:{lease.lease_id}",
            order_id=lease.order_id,
            detail={
                "lease_id": lease.lease_id,
                "site_id": lease.site_id,
                "units": lease.units,
                "not_after": lease.not_after.isoformat(),
                "fixtures": [f["id"] for f in bundle["fixtures"]],
            },
        )


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def agent_lease(home: Path) -> Lease:
    """The lease an agent home runs under (its signature checked again)."""
    path = home / LEASE_NAME
    if not path.exists():
        raise ConfigurationError(f"{home} is not a site agent (no {LEASE_NAME}): run 'fabguard agent init'")
    return open_bundle(json.loads(path.read_text()))


def sync_package(inst: Instance, home: Path) -> SyncPackage:
    """The agent's whole log, a checkpoint of it signed with the agent's ledger key, and its units'
    certificates. A sync is an event of its own first, so every genuine sync is newer than the last one
    (an old package sent again is then a replay the central server refuses)."""
    lease = agent_lease(home)
    with inst.db.transaction() as s:
        append_event(
            s, "agent.sync_prepared", at=inst.clock(), actor=f"lease:{lease.lease_id}", order_id=lease.order_id
        )
    checkpoint = merkle_log.make_checkpoint(inst)
    with inst.db.read() as s:
        entries = [
            bytes(e)
            for e in s.execute(select(Event.entry).where(Event.seq <= checkpoint.size).order_by(Event.seq)).scalars()
        ]
        certificates = {sha: pem for sha, pem in s.execute(select(Unit.cert_sha256, Unit.certificate_pem)).all()}
    signer = home / "ca" / STATUS_SIGNER_NAME
    status_signer = signer.read_text() if signer.exists() else None
    return SyncPackage(lease.lease_id, checkpoint.note, entries, certificates, status_signer)


def finish_agent(inst: Instance, home: Path) -> dict[str, object]:
    """End the agent's lease at the site before its time (ADR 0022): its one order is closed and its quota cut
    to the units made (so no unit can follow, whatever a provisioning in flight read), and an
    ``agent.lease_finished`` entry, signed into its log with the next sync, says so. The central server then
    takes that synced log as final and may close the lease, returning the units not made to the order."""
    lease = agent_lease(home)
    with inst.db.transaction() as s:
        s.execute(
            update(Order)
            .where(Order.id == lease.order_id)
            .values(state=OrderState.CLOSED.value, quota=Order.used)
            .execution_options(synchronize_session=False)
        )
        order = s.get(Order, lease.order_id, populate_existing=True)
        assert order is not None
        detail = {"lease_id": lease.lease_id, "units": lease.units, "made": order.used}
        already = s.execute(select(Event.seq).where(Event.kind == FINISHED).limit(1)).first()
        if already is None:
            append_event(
                s, FINISHED, at=inst.clock(), actor=f"lease:{lease.lease_id}", order_id=lease.order_id, detail=detail
            )
    return {**detail, "already": already is not None}
