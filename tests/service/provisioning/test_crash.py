"""SIGKILL the server in the middle of a production run, restart it, let the line carry on.

A certificate never leaves the server unrecorded (sign, commit, then answer), and an idempotent retry
returns a unit's certificate again, so after the crash the books must balance exactly: every
certificate a fixture holds is recorded, ``used`` equals the units recorded, no order is over quota,
the event sequence has no gap, and issued plus refused is every unit built.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.service.core.instance import Instance
from fabguard.store.models import Unit
from tests.served import ServerProcess
from tests.service.provisioning.test_quota_concurrency import (
    PlannedUnit,
    assert_gap_free_events,
    enrol_fixtures,
    make_units,
    new_order,
    read_books,
    set_up_catalog,
    upload_passing_tests,
)

FIXTURES = 8
UNITS = 300
QUOTA = 250
# SIGKILL the server when the fixtures hold this many answers: twice while certificates are being
# issued, once when the quota is gone and refusals are being handed out.
KILL_AT = (60, 150, 275)
DEADLINE_S = 90.0


@dataclass
class Line:
    """What the fixtures saw, across the crash."""

    issued: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    replayed: int = 0
    transport_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # the test failed: stations give up

    def answers(self) -> int:
        with self.lock:
            return len(self.issued) + len(self.refused)


def provision_until_answered(
    client: FixtureClient, order_id: str, unit: PlannedUnit, line: Line, deadline: float
) -> None:
    """Ask until the server decides; on a dropped connection ask again with the same serial and key."""
    while True:
        try:
            issued = client.provision(order_id, unit.serial, unit.csr)
        except httpx.TransportError:
            with line.lock:
                line.transport_errors += 1
            if time.monotonic() > deadline or line.stop.is_set():
                with line.lock:
                    line.unexpected.append(f"{unit.serial}: no answer before the deadline")
                return
            time.sleep(0.05)
            continue
        except FabGuardClientError as exc:
            with line.lock:
                if exc.code == "quota_exhausted":
                    line.refused[unit.serial] = exc.code
                else:
                    line.unexpected.append(f"{unit.serial}: {exc.status} {exc.code}: {exc.message}")
            return
        with line.lock:
            previous = line.issued.get(unit.serial)
            if previous is not None and previous != issued.certificate_pem:
                line.unexpected.append(f"{unit.serial}: a second, different certificate")
            line.issued[unit.serial] = issued.certificate_pem
            line.replayed += int(issued.replayed)
        return


@pytest.mark.slow
def test_sigkill_mid_run_loses_no_certificate_and_never_overshoots(
    any_instance: Instance, server_processes: Callable[[Path], ServerProcess], tmp_path: Path
) -> None:
    inst = any_instance
    set_up_catalog(inst)
    order = new_order(inst, QUOTA)
    server = server_processes(inst.home)
    creds = enrol_fixtures(inst, server.url, tmp_path / "fixtures", FIXTURES)
    clients = [FixtureClient(c, timeout=20.0) for c in creds]
    try:
        units = make_units(UNITS)
        upload_passing_tests(clients[0], [u.serial for u in units])

        line = Line()
        at_kill: list[int] = []
        deadline = time.monotonic() + DEADLINE_S
        shares = [units[i::FIXTURES] for i in range(FIXTURES)]

        def station(i: int) -> None:
            for unit in shares[i]:
                provision_until_answered(clients[i], order, unit, line, deadline)

        with ThreadPoolExecutor(max_workers=FIXTURES) as pool:
            futures = [pool.submit(station, i) for i in range(FIXTURES)]
            try:
                for threshold in KILL_AT:
                    while line.answers() < threshold:
                        assert time.monotonic() < deadline, f"only {line.answers()} answers before the deadline"
                        for f in futures:
                            if f.done():
                                f.result()  # a station that died raises here
                        assert not all(f.done() for f in futures), "the run ended before the crash"
                        time.sleep(0.005)
                    server.kill()
                    assert server.proc is not None and server.proc.returncode == -signal.SIGKILL
                    at_kill.append(line.answers())
                    server.start()  # same home, same port: the fixtures reconnect on their own
            except BaseException:
                line.stop.set()
                raise
            for f in futures:
                f.result()
    finally:
        for c in clients:
            c.close()

    assert len(at_kill) == len(KILL_AT) and at_kill[-1] < UNITS, "the run was over before a crash"
    assert line.transport_errors > 0, "no request met the dead server"
    assert not line.unexpected, line.unexpected
    # Every unit got its decision, once.
    assert set(line.issued) | set(line.refused) == {u.serial for u in units}
    assert not set(line.issued) & set(line.refused)
    assert len(line.issued) == QUOTA and len(line.refused) == UNITS - QUOTA
    assert len(set(line.issued.values())) == QUOTA, "two units hold the same certificate"

    books = read_books(inst, order)  # also: no order anywhere is over its quota
    assert books.unit_pems == line.issued, "a certificate a fixture holds is missing from, or differs in, the books"
    assert books.used == len(books.unit_pems) == QUOTA
    with inst.db.read() as s:
        assert s.execute(select(func.count()).select_from(Unit)).scalar_one() == QUOTA
    assert sorted(books.provisioned_serials) == sorted(line.issued), "one provisioned event per unit, no more"
    # A refusal whose answer was lost in the crash was recorded, then asked again: at least one event
    # per refused unit, and no more than one per attempt.
    assert set(books.refusal_codes) == {"quota_exhausted"}
    assert len(line.refused) <= books.refusal_codes["quota_exhausted"] <= len(line.refused) + line.transport_errors
    assert_gap_free_events(inst)
    print(
        f"killed after {at_kill} answers; {line.transport_errors} dropped requests retried, "
        f"{line.replayed} certificates handed out again; refusal events {dict(books.refusal_codes)}"
    )
