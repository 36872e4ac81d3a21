"""The auth generation is read on the server's event loop on SQLite (ADR 0021): that read must not wait for a
writer. In WAL mode a reader reads the last commit while a writer holds its transaction open; this holds a
real write transaction (the provisioning writer's kind: BEGIN IMMEDIATE, rows changed, not committed) in
another thread and times the read beside it. And what it reads is the last commit: the uncommitted bump is
not seen, the committed one is."""

from __future__ import annotations

import ssl
import threading
import time

from sqlalchemy import update

from fabguard.domain.values import SiteId
from fabguard.service.catalog import fixtures, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.auth_generation import bump_auth_generation, read_auth_generation
from fabguard.store.models import Order
from tests.support import enrolled_fixture_pem

HELD_SECONDS = 5.0


def _der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem)


def test_a_remembered_fixture_is_read_beside_an_open_write_transaction_without_waiting(instance: Instance) -> None:
    inst = instance
    assert fixtures.generation_is_local(inst)
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    der = _der(enrolled_fixture_pem(inst, "fx-wal"))
    facts = fixtures.authenticate_fixture(inst, der, route="test")  # remembered under the generation
    generation = read_auth_generation(inst.db)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with inst.db.transaction() as s:  # BEGIN IMMEDIATE: the database's one write lock, held
            bump_auth_generation(s)
            s.execute(update(Order).values(used=Order.used))  # more changed pages, as a group's commit has
            s.flush()
            holding.set()
            release.wait(HELD_SECONDS)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        during = [fixtures.remembered_fixture(inst, der) for _ in range(50)]
        took = time.monotonic() - started
        still_writing = thread.is_alive() and not release.is_set()
    finally:
        release.set()
        thread.join()

    assert still_writing, "the writer must still hold its transaction while the reads ran"
    assert took < 2.0, f"50 reads took {took:.2f} s beside the writer (it holds its lock {HELD_SECONDS} s)"
    assert during == [facts] * 50  # the last commit's generation: the uncommitted bump is not seen
    assert read_auth_generation(inst.db) == generation + 1  # committed now
    assert fixtures.remembered_fixture(inst, der) is None  # so the memory no longer answers
    assert fixtures.authenticate_fixture(inst, der, route="test") == facts  # read again, and remembered
    assert fixtures.remembered_fixture(inst, der) == facts


def test_without_a_certificate_nothing_is_remembered(instance: Instance) -> None:
    assert fixtures.remembered_fixture(instance, None) is None
    assert fixtures.remembered_fixture(instance, b"") is None
