"""Leases on both engines: take, renew, expire, release, and one winner when many race."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from fabguard.service.core.instance import Instance
from fabguard.store import worker_leases
from fabguard.store.db import Database

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=60)


def acquire(db: Database, holder: str, at: datetime, name: str = "job") -> bool:
    with db.transaction() as s:
        return worker_leases.acquire(s, name, holder, now=at, ttl=TTL)


def release(db: Database, holder: str, name: str = "job") -> bool:
    with db.transaction() as s:
        return worker_leases.release(s, name, holder)


def holder(db: Database, at: datetime, name: str = "job") -> str | None:
    with db.read() as s:
        return worker_leases.holder_of(s, name, now=at)


def test_a_free_lease_is_taken_and_refused_to_others_until_it_expires(any_instance: Instance) -> None:
    db = any_instance.db
    assert holder(db, T0) is None
    assert acquire(db, "a", T0)
    assert holder(db, T0) == "a" and holder(db, T0 + TTL - timedelta(microseconds=1)) == "a"
    assert not acquire(db, "b", T0 + TTL / 2)
    assert holder(db, T0 + TTL / 2) == "a"  # a refused attempt changes nothing
    assert holder(db, T0 + TTL) is None  # held while now < expires_at
    assert acquire(db, "b", T0 + TTL)
    assert holder(db, T0 + TTL) == "b"
    assert not acquire(db, "a", T0 + TTL)  # the old holder does not get it back by renewing


def test_the_holder_renews_and_pushes_the_expiry_on(any_instance: Instance) -> None:
    db = any_instance.db
    assert acquire(db, "a", T0)
    assert acquire(db, "a", T0 + timedelta(seconds=50))
    assert not acquire(db, "b", T0 + timedelta(seconds=100))
    assert holder(db, T0 + timedelta(seconds=109)) == "a"
    assert holder(db, T0 + timedelta(seconds=110)) is None


def test_release_frees_the_lease_at_once_but_only_for_its_holder(any_instance: Instance) -> None:
    db = any_instance.db
    assert acquire(db, "a", T0)
    assert not release(db, "b")
    assert holder(db, T0) == "a"
    assert release(db, "a")
    assert holder(db, T0) is None and not release(db, "a")
    assert acquire(db, "b", T0)


def test_leases_are_independent_by_name(any_instance: Instance) -> None:
    db = any_instance.db
    assert acquire(db, "a", T0, name="webhooks")
    assert acquire(db, "b", T0, name="reports")
    assert (holder(db, T0, "webhooks"), holder(db, T0, "reports")) == ("a", "b")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def hold(db: Database, clock: Clock, holder: str) -> worker_leases.Hold:
    return worker_leases.Hold(db, "job", ttl=TTL, clock=clock, holder=holder)


def test_a_hold_renews_only_while_unbroken(any_instance: Instance) -> None:
    clock = Clock()
    a = hold(any_instance.db, clock, "a")
    assert not a.renew(timedelta(0))  # renewing is for a hold already taken
    assert a.take() and a.held
    clock.now += TTL / 2
    assert a.renew(TTL / 2)
    assert holder(any_instance.db, T0 + TTL) == "a"  # the renewal pushed the expiry on
    assert not a.renew(TTL + timedelta(seconds=1))  # renewed, but with less room than asked for
    clock.now += TTL
    # Nobody took it, but someone could have come and gone: a lapsed hold is not renewed, only retaken.
    assert not a.renew(timedelta(0)) and not a.held
    assert a.take() and a.held


def test_a_hold_is_taken_over_after_expiry_and_the_changes_are_logged(
    any_instance: Instance, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    a, b = hold(any_instance.db, clock, "a"), hold(any_instance.db, clock, "b")
    caplog.set_level(logging.INFO, logger="fabguard.leases")
    assert a.take() and not b.take()
    assert "lease job taken by a" in caplog.messages
    clock.now += TTL
    assert b.take() and "lease job taken by b" in caplog.messages
    assert not a.take() and not a.held
    assert "lease job of a lost to b" in caplog.messages
    b.release()
    assert holder(any_instance.db, clock.now) is None and "lease job released by b" in caplog.messages
    assert a.take()


def test_holder_ids_are_unique_per_holder() -> None:
    assert worker_leases.holder_id() != worker_leases.holder_id()


@pytest.mark.parametrize("state", ["free", "expired"])
def test_of_many_racing_holders_on_two_engines_exactly_one_wins(any_instance: Instance, state: str) -> None:
    """Threads on this instance's engine and on a second instance's (as a second process) race."""
    other = Instance.open(any_instance.home)
    try:
        for round_ in range(5):
            name = f"race-{round_}"
            if state == "expired":
                assert acquire(any_instance.db, "crashed", T0 - 2 * TTL, name=name)
            winners = race(any_instance.db, other.db, name, threads=16)
            assert len(winners) == 1, winners
            assert holder(other.db, T0, name) == winners[0]
    finally:
        other.close()


def race(first: Database, second: Database, name: str, *, threads: int) -> list[str]:
    """Every thread opens its own transaction and tries to take ``name``; returns who got it."""
    # SQLite admits one writer at a time, so there the threads meet before their transactions; on
    # PostgreSQL they meet inside them, so that every insert and update really overlaps.
    inside = not first.is_sqlite
    start = threading.Barrier(threads)
    winners: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        db = first if i % 2 else second
        me = f"holder-{i}"
        try:
            if not inside:
                start.wait()
            with db.transaction() as s:
                if inside:
                    s.connection()  # hold a connection, so all try at once
                    start.wait()
                won = worker_leases.acquire(s, name, me, now=T0, ttl=TTL)
            if won:
                with lock:
                    winners.append(me)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    return winners
