"""A database outage is ``database_unavailable`` (503, send again), never a 500 that looks like a bug; and
while it lasts nothing is done: the same request, sent again afterwards, is decided as if it came then."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from fabguard.domain.errors import Unavailable
from fabguard.domain.values import ProductId
from fabguard.fixture.client import FabGuardClientError, FixtureClient, tls_context
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.db import Database
from fabguard.store.models import Order
from tests.support import World, fresh_pg_database, new_instance, pg_admin_url, tested_device


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


def _set_read_only(url: str, on: bool) -> None:
    """What a standby is to its clients: every transaction of the database read-only (new sessions)."""
    u, admin = make_url(url), make_url(str(pg_admin_url()))
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=admin.database, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{u.database}" SET default_transaction_read_only = {"on" if on else "off"}')


@pytest.mark.postgres
def test_a_read_only_database_is_unavailable_and_reads_still_work(tmp_path: Path, pg_url: str) -> None:
    inst = new_instance(tmp_path / "home", pg_url)
    try:
        _set_read_only(pg_url, True)
        inst.db.engine.dispose()  # the setting applies to new sessions
        with pytest.raises(Unavailable) as caught:
            product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
        assert (caught.value.code, caught.value.status) == ("database_unavailable", 503)
        assert "read-only" in caught.value.message
        assert product_catalog.list_products(inst) == []  # reads go on
        _set_read_only(pg_url, False)
        inst.db.engine.dispose()
        product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
        assert [p.id for p in product_catalog.list_products(inst)] == ["sensor"]
    finally:
        inst.db.dispose()


@pytest.mark.postgres
def test_an_unreachable_database_is_unavailable(pg_url: str) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = Database(make_url(pg_url).set(port=port).render_as_string(hide_password=False))
    try:
        with pytest.raises(Unavailable, match="database is unavailable"), db.read() as s:
            s.execute(text("SELECT 1"))
    finally:
        db.dispose()


def test_a_database_error_that_is_no_outage_stays_an_error(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(OperationalError, match="no such table"), db.transaction() as s:
            s.execute(text("SELECT * FROM no_such_table"))
    finally:
        db.dispose()


@pytest.mark.postgres
def test_provisioning_during_an_outage_answers_503_consumes_nothing_and_works_when_sent_again(
    tmp_path: Path, pg_url: str
) -> None:
    inst: Instance = new_instance(tmp_path / "home", pg_url)
    world = World.start(inst, tmp_path)
    try:
        order = world.order(quota=5)
        client = world.fixture("fx-1")
        device = tested_device(client, "SN-OUT-1")
        _set_read_only(pg_url, True)
        inst.db.engine.dispose()
        body = {"order_id": order, "serial": device.serial, "csr": device.csr_pem()}
        with httpx.Client(base_url=world.url, verify=tls_context(client.credentials)) as raw:
            answer = raw.post("/api/v1/units/provision", json=body, headers={"Idempotency-Key": "k-outage-1"})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.json()["error"]["code"] == "database_unavailable"
        # The SDK sends a 503 again for ``busy_retry_seconds``, then hands it on.
        with (
            FixtureClient(client.credentials, busy_retry_seconds=1.0) as patient,
            pytest.raises(FabGuardClientError) as caught,
        ):
            patient.provision(order, device.serial, body["csr"], idempotency_key="k-outage-1")
        assert (caught.value.status, caught.value.code) == (503, "database_unavailable")
        with inst.db.read() as s:
            assert s.execute(select(Order.used).where(Order.id == order)).scalar_one() == 0
        _set_read_only(pg_url, False)
        inst.db.engine.dispose()
        done = client.provision(order, device.serial, body["csr"], idempotency_key="k-outage-1")
        assert done.serial == device.serial and not done.replayed
        with inst.db.read() as s:
            assert s.execute(select(Order.used).where(Order.id == order)).scalar_one() == 1
    finally:
        world.stop()
        inst.db.dispose()


@pytest.mark.postgres
def test_a_postgres_error_of_the_operational_class_that_is_a_bug_stays_one(tmp_path: Path, pg_url: str) -> None:
    """psycopg calls these OperationalError too; they are the program's fault, not an outage: no 503."""
    db = Database(pg_url)
    try:
        for statements in (["CREATE TEMP SEQUENCE s", "SELECT currval('s')"], ["ROLLBACK TO SAVEPOINT nope"]):
            with pytest.raises(DBAPIError) as caught, db.transaction() as s:
                for statement in statements:
                    s.execute(text(statement))
            assert not isinstance(caught.value, Unavailable)
    finally:
        db.dispose()
