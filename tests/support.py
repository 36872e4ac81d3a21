"""A test world: a real instance, a real HTTPS server on loopback, enrolled fixtures, real crypto."""

from __future__ import annotations

import os
import random
import secrets
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import make_url

from fabguard.api.server import ServerThread
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.fixture.client import Credentials, FixtureClient, enroll
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.access import tokens
from fabguard.service.approvals import requests
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from tests import templates

PASSPHRASE = "test-passphrase-not-secret"
PG_ENV = "FABGUARD_TEST_PG_URL"


def pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV)


def create_pg_database(*, migrated: bool = False) -> str:
    """A fresh PostgreSQL database for one test; returns its SQLAlchemy URL.

    Empty, or with ``migrated`` a copy of the session's migrated template (tests/templates.py): the schema
    at the head revision and nothing that differs between instances."""
    admin = make_url(os.environ[PG_ENV])
    name = f"fg_{secrets.token_hex(6)}"
    templates.create_pg_database(name, migrated=migrated)
    return admin.set(database=name).render_as_string(hide_password=False)


@contextmanager
def fresh_pg_database(*, migrated: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database for the test (dropped after it); the test is skipped without a server."""
    if not pg_admin_url():
        pytest.skip("FABGUARD_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
    url = create_pg_database(migrated=migrated)
    try:
        yield url
    finally:
        drop_pg_database(url)


def drop_pg_database(url: str) -> None:
    u = make_url(url)
    admin = make_url(os.environ[PG_ENV])
    with psycopg.connect(
        host=admin.host, port=admin.port, user=admin.username, dbname=admin.database, autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')


def new_instance(home: Path, database_url: str | None = None, *, from_template: bool = True) -> Instance:
    """A new instance in ``home``: its own keys and CAs (``init_instance``), opened as a server opens it.

    On SQLite (no ``database_url``) its database starts as a copy of the session's migrated template
    unless ``from_template`` is false; on PostgreSQL it is the database given (``create_pg_database``
    says whether that one is migrated already). ``init_instance`` migrates whatever is left to migrate
    (nothing, from the template) and registers the instance's CAs."""
    _database_from_template(home, database_url, from_template)
    init_instance(home, organization="Acme Devices", database_url=database_url)
    return Instance.open(home)


def _database_from_template(home: Path, database_url: str | None, from_template: bool) -> None:
    if database_url is None and from_template:
        home.mkdir(parents=True, exist_ok=True)
        templates.copy_sqlite_template(home)


@dataclass
class World:
    """An instance with a product, two sites and a running server; helpers to enrol fixtures."""

    inst: Instance
    tmp: Path
    server: ServerThread
    admin_token: str = ""
    clients: list[FixtureClient] = field(default_factory=list)

    @classmethod
    def start(cls, inst: Instance, tmp: Path) -> World:
        server = ServerThread(inst).start()
        world = cls(inst, tmp, server)
        _, world.admin_token = tokens.create_token(inst, name="admin", role="admin", actor="test")
        product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor v2", actor="test")
        product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
        product_catalog.create_site(inst, site_id=SiteId("cm-b"), name="CM B", actor="test")
        return world

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def root_ca(self) -> Path:
        return self.inst.cas.cert_path("root")

    def order(self, quota: int = 10, *, site: str = "cm-a", order_id: str | None = None, **kw: Any) -> str:
        return orders.create_order(
            self.inst,
            product_id=ProductId("sensor"),
            site_id=SiteId(site),
            quota=quota,
            actor="test",
            order_id=OrderId(order_id) if order_id else None,
            **kw,
        ).id

    def credentials(self, fixture_id: str, site: str = "cm-a") -> Credentials:
        _, token = fixtures.create_fixture(
            self.inst, fixture_id=FixtureId(fixture_id), site_id=SiteId(site), actor="test"
        )
        return enroll(self.url, token, self.tmp / "fixtures" / fixture_id, ca_file=self.root_ca)

    def fixture(self, fixture_id: str, site: str = "cm-a") -> FixtureClient:
        client = FixtureClient(self.credentials(fixture_id, site))
        self.clients.append(client)
        return client

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.root_ca)),
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )


# Who asks for an act under dual control in a test (the local operator: no token).
REQUESTER = requests.Person("test", "test", None)


def second_person_approves(inst: Instance, pending: requests.ApprovalView) -> dict[str, Any]:
    """A second person, with an approver token of their own, approves ``pending``: what its act did."""
    approver, _ = tokens.create_token(inst, name=f"approver-{pending.id}", role="approver", actor="test")
    done = requests.decide(inst, pending.id, approve=True, by=approver)
    assert done.result is not None
    return done.result


def enrolled_fixture_pem(
    inst: Instance, fixture_id: str, site: str = "cm-a", key: ec.EllipticCurvePrivateKey | None = None
) -> str:
    """Add a fixture and enrol it through the service with a CSR of ``key`` (a new one by default): its certificate PEM."""
    _, token = fixtures.create_fixture(inst, fixture_id=FixtureId(fixture_id), site_id=SiteId(site), actor="test")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fabguard-fixture")]))
        .sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    return fixtures.enroll_fixture(
        inst, token=token, csr_data=csr.public_bytes(serialization.Encoding.PEM)
    ).certificate_pem


def tested_device(client: FixtureClient, serial: str, *, passed: bool = True, seed: int = 0) -> SimulatedDevice:
    """A device whose test record (PASS or FAIL) has been uploaded by ``client``."""
    device = SimulatedDevice(serial)
    client.upload_test_record(
        openhtf_record(serial, client.credentials.fixture_id, fail=not passed, rng=random.Random(seed))
    )
    return device


tested_device.__test__ = False  # type: ignore[attr-defined]


# SoftHSM2: one private token store per test session (SoftHSM reads SOFTHSM2_CONF once per process).
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "fabguard-test"
# A token no backend stays logged in to, so a wrong PIN reaches the token's own check.
PIN_TOKEN = "fabguard-pin"
USER_PIN = "user-pin-4711"
SO_PIN = "so-pin-0815"
WRONG_PIN = "wrong-pin-1234"


@dataclass(frozen=True)
class SoftHsm:
    module: str
    directory: Path  # the configuration file and SoftHSM's own (encrypted) token store


def softhsm_available() -> bool:
    import shutil

    return Path(SOFTHSM_MODULE).is_file() and shutil.which("softhsm2-util") is not None


def new_hsm_instance(
    home: Path, hsm: SoftHsm, database_url: str | None = None, *, from_template: bool = True
) -> Instance:
    """An instance whose CA keys live in the SoftHSM token (PIN from the environment, as in production);
    its database as in ``new_instance``."""
    os.environ["FABGUARD_PKCS11_PIN"] = USER_PIN
    _database_from_template(home, database_url, from_template)
    init_instance(
        home,
        organization="Acme Devices",
        database_url=database_url,
        key_backend="pkcs11",
        pkcs11_module=hsm.module,
        pkcs11_token=TOKEN,
    )
    return Instance.open(home)
