"""Failover to a synchronous standby: the primary dies mid-load, the standby is promoted, no certificate is lost.

A PostgreSQL primary of this test's own streams to a standby made with ``pg_basebackup -R`` and named
``standby1`` in its ``primary_conninfo``; the primary commits synchronously to it
(``synchronous_standby_names = 'FIRST 1 (standby1)'``, ``synchronous_commit = on``). One ``fabguard
serve --workers 2`` reaches the database through a multi-host URL naming both nodes with
``target_session_attrs=read-write``, as the README says to. Eight fixtures provision units on two
orders, one with a quota smaller than its units; some units are asked again after their answer.

The standby's ``synchronous_standby_names``, copied from the primary by ``pg_basebackup``, is emptied
once it runs (a standby ignores it; promoted with it, the node would make every commit wait for ever
for a standby1 that is not there). Mid-load the standby's WAL receiver is stopped (SIGSTOP): commits
must then wait on the primary (wait event ``SyncRep``) and no new decision may reach a fixture. With
commits waiting, the whole primary is SIGKILLed (every process of it), the WAL receiver resumes, and a
moment later the standby is promoted (``pg_promote()``), as a failover manager would. Meanwhile a
fixture sees 5xx and asks again with the same serial, CSR and Idempotency-Key; the server is not
restarted and finds the promoted node through the URL by itself.

Afterwards, on the promoted node, the books balance exactly: every certificate a fixture was handed,
before the primary died or after, is the one recorded for its unit; an exhausted order issued exactly
its quota, the other one unit per unit offered; retries got their unit's certificate, replayed; one
ledger event per decided request, no gap in the event sequence, the Merkle root recomputes, and
``fabguard audit verify`` passes on a ``fabguard ledger export``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from fabguard.fixture.client import FixtureClient, tls_context
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from tests.served import ServerProcess, free_port
from tests.service.provisioning.test_quota_concurrency import (
    PlannedUnit,
    assert_gap_free_events,
    enrol_fixtures,
    new_order,
    read_books,
    set_up_catalog,
    upload_passing_tests,
)
from tests.service.provisioning.test_torture import (
    Ask,
    CountingTransport,
    Line,
    PgCluster,
    ask_until_decided,
    cluster_owner,
    postgres_binaries,
    run_ledger_cli,
    wait_for_answers,
)

FIXTURES = 8
WORKERS = 2
ORDERS = {"A": (20, 32), "B": (30, 28)}  # name: (quota, units offered): A runs out, B does not
RETRY_EVERY = 5  # every fifth unit is asked again, a few asks after its answer
KILL_PRIMARY_AT = 0.35  # fraction of all requests answered
STALL_S = 0.5  # how long the standby receives nothing before the primary is killed
NO_PRIMARY_S = 0.5  # how long no node accepts writes before the standby is promoted
DEADLINE_S = 40.0
STANDBY = "standby1"
PRIMARY_SETTINGS = {"wal_level": "replica", "max_wal_senders": "4", "synchronous_commit": "on"}
SYNCHRONOUS_STANDBY_NAMES = f"FIRST 1 ({STANDBY})"
REPLICATION_HBA = "host replication fabguard 127.0.0.1/32 trust"


# ------------------------------------------------------------------ a primary and its synchronous standby
class Primary(PgCluster):
    """A PgCluster that streams to a synchronous standby: its settings written before its first start,
    the standby's name once its database is made (with no standby yet, ``CREATE DATABASE`` would wait)."""

    def start(self, timeout: float = 30.0) -> None:
        if self.starts == 0:
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in PRIMARY_SETTINGS.items())
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(REPLICATION_HBA + "\n")
        super().start(timeout)

    def init(self) -> Primary:
        super().init()
        with connect(self) as c:
            c.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{SYNCHRONOUS_STANDBY_NAMES}'")
            c.execute("SELECT pg_reload_conf()")
        return self


class Standby(PgCluster):
    """A hot standby cloned from ``primary`` by ``pg_basebackup -R`` (which writes its primary_conninfo)."""

    def clone(self, primary: Primary) -> Standby:
        conninfo = f"host=127.0.0.1 port={primary.port} user=fabguard application_name={STANDBY}"
        cmd = [str(self.bin_dir / "pg_basebackup"), "-D", str(self.data), "-R", "-X", "stream", "-c", "fast"]
        done = subprocess.run(  # type: ignore[call-overload]
            [*cmd, "-d", conninfo],
            cwd=self.dir,
            capture_output=True,
            env={"HOME": str(self.dir)},
            timeout=60,
            **self._user(),
        )
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        self.start()
        with connect(self) as c:
            # Copied from the primary by pg_basebackup. Once promoted, this node would make every commit
            # wait (wait event SyncRep) for a standby1 that is not there, for ever; a standby ignores it.
            # Emptied at once: emptied (a reload) just before pg_promote(), the promotion took 5 s here.
            assert c.execute("SHOW synchronous_standby_names").fetchone() == (SYNCHRONOUS_STANDBY_NAMES,)
            c.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            c.execute("SELECT pg_reload_conf()")
        return self

    def promote(self) -> None:
        with connect(self) as c:
            assert c.execute("SELECT pg_promote(wait => true)").fetchone() == (True,)

    def wal_receiver(self) -> int:
        """The pid of the process that receives the primary's WAL and acknowledges it."""
        with connect(self) as c:
            row = c.execute("SELECT pid FROM pg_stat_wal_receiver WHERE status = 'streaming'").fetchone()
        assert row is not None, "the standby is not streaming"
        return int(str(row[0]))


def connect(node: PgCluster) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host="127.0.0.1", port=node.port, user="fabguard", dbname="postgres", autocommit=True)


def commits_waiting_for_the_standby(primary: Primary) -> int:
    with connect(primary) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'").fetchone()
    return int(str(row[0])) if row else 0


def wait_until_synchronous(primary: Primary, timeout: float = 30.0) -> tuple[object, ...]:
    """The primary's view of its standby once it streams and counts as synchronous."""
    deadline = time.monotonic() + timeout
    with connect(primary) as c:
        while True:
            row = c.execute(
                "SELECT application_name, state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                (STANDBY,),
            ).fetchone()
            if row == (STANDBY, "streaming", "sync"):
                return row
            assert time.monotonic() < deadline, f"the standby is not a synchronous one: {row}"
            time.sleep(0.05)


def multi_host_url(*nodes: PgCluster) -> str:
    hosts = "&".join(f"host=127.0.0.1:{n.port}" for n in nodes)
    return f"postgresql+psycopg://fabguard@/fabguard?{hosts}&target_session_attrs=read-write"


@pytest.fixture
def pg_pair() -> Iterator[tuple[Primary, Standby]]:
    bin_dir = postgres_binaries()
    if bin_dir is None or not (bin_dir / "pg_basebackup").is_file():
        pytest.skip("initdb/postgres/pg_basebackup not found (Debian package postgresql; scripts/test installs it)")
    owner = cluster_owner()
    primary, standby = Primary(bin_dir, owner), Standby(bin_dir, owner)
    try:
        primary.init()
        standby.clone(primary)
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


@pytest.fixture
def failover_instance(pg_pair: tuple[Primary, Standby], tmp_path: Path) -> Iterator[Instance]:
    home = tmp_path / "home"
    init_instance(home, organization="Acme Devices", database_url=multi_host_url(*pg_pair))
    inst = Instance.open(home)  # migrates, through the URL, on whichever node is read-write
    try:
        yield inst
    finally:
        inst.close()


@pytest.fixture
def server(failover_instance: Instance, tmp_path: Path) -> Iterator[ServerProcess]:
    started = ServerProcess(failover_instance.home, free_port(), tmp_path / "server.log", WORKERS)
    try:
        yield started.start(60.0)
    finally:
        started.stop()


def plan(orders: dict[str, str]) -> tuple[list[list[Ask]], list[str]]:
    """Each fixture's queue, orders interleaved, some units asked again after their answer; and every serial.
    A station asks one thing at a time, so a retry comes after its original was decided."""
    units = [
        (orders[name], SimulatedDevice(f"S{name}{i:06d}"))
        for i in range(1, max(offered for _, offered in ORDERS.values()) + 1)
        for name, (_, offered) in ORDERS.items()
        if i <= offered
    ]
    queues: list[list[Ask]] = [[] for _ in range(FIXTURES)]
    for n, (order, device) in enumerate(units):
        unit = PlannedUnit(device.serial, device.csr_pem())
        queues[n % FIXTURES].append(Ask(order, unit, "first", device.serial))
        if n % RETRY_EVERY == 2:
            queues[n % FIXTURES].append(Ask(order, unit, "retry", device.serial))
    return queues, [device.serial for _, device in units]


# ------------------------------------------------------------------ the test
@pytest.mark.postgres
@pytest.mark.slow
def test_no_certificate_is_lost_when_the_primary_dies_and_its_synchronous_standby_is_promoted(
    pg_pair: tuple[Primary, Standby], failover_instance: Instance, server: ServerProcess, tmp_path: Path
) -> None:
    primary, standby = pg_pair
    inst = failover_instance
    took: dict[str, float] = {}
    t0 = time.monotonic()
    replication = wait_until_synchronous(primary)
    with inst.db.read() as s:
        assert s.execute(text("SELECT inet_server_port(), pg_is_in_recovery()")).one() == (primary.port, False)
    set_up_catalog(inst)
    orders = {name: new_order(inst, quota) for name, (quota, _) in ORDERS.items()}
    creds = enrol_fixtures(inst, server.url, tmp_path / "fixtures", FIXTURES)
    line = Line()
    clients = [
        # busy_retry_seconds=0: every 503 and in-progress answer comes back here, to be counted and resent
        FixtureClient(
            c, server=server.url, timeout=15.0, busy_retry_seconds=0, transport=CountingTransport(line, tls_context(c))
        )
        for c in creds
    ]
    try:
        queues, serials = plan(orders)
        upload_passing_tests(clients[0], serials)
        took["set-up"] = time.monotonic() - t0
        t1 = time.monotonic()
        total = sum(len(q) for q in queues)
        deadline = time.monotonic() + DEADLINE_S

        def station(i: int) -> None:
            for ask in queues[i]:
                ask_until_decided(server.url, clients[i], ask, line, deadline)

        with ThreadPoolExecutor(max_workers=FIXTURES) as pool:
            futures = [pool.submit(station, i) for i in range(FIXTURES)]
            try:
                before = wait_for_answers(line, futures, KILL_PRIMARY_AT * total, deadline)
                # The standby stops receiving: with synchronous commit, no commit may answer now. Those
                # under way wait (wait event SyncRep), and die with the primary unanswered.
                receiver = standby.wal_receiver()
                os.kill(receiver, signal.SIGSTOP)
                try:
                    waited = time.monotonic() + 5.0  # asynchronous replication would never wait
                    while (waiting := commits_waiting_for_the_standby(primary)) < 1 and time.monotonic() < waited:
                        time.sleep(0.01)
                    time.sleep(0.2)  # answers of commits acknowledged before the stop leave the server
                    stalled = line.count()
                    time.sleep(STALL_S)
                    with line.lock:
                        during_stall = line.answers[stalled:]
                        at_kill = len(line.answers)
                    killed_at = time.monotonic()
                    primary.kill()
                finally:
                    os.kill(receiver, signal.SIGCONT)
                time.sleep(NO_PRIMARY_S)
                at_promotion = line.count()
                standby.promote()
                promoted_at = time.monotonic()
            except BaseException:
                line.stop.set()
                raise
            for f in futures:
                f.result()
        took["load"] = time.monotonic() - t1
    finally:
        for c in clients:
            c.close()

    # Synchronous indeed: once the standby received nothing, commits waited and no new decision got out
    # (a retry may be replayed from what is already committed, with no commit of its own).
    assert waiting >= 1, "no commit waited for the standby once it stopped receiving: not synchronous"
    assert all(a.ask.kind == "retry" for a in during_stall), (
        f"answered while the standby had not got it: {during_stall}"
    )

    # The server lived through it and found the promoted node by itself; nothing was restarted.
    assert server.proc is not None and server.proc.poll() is None, server.log_text()
    assert primary.proc is not None and primary.proc.poll() is not None and primary.starts == 1
    with inst.db.read() as s:
        assert s.execute(text("SELECT inet_server_port(), pg_is_in_recovery()")).one() == (standby.port, False)
    assert line.server_errors, "no request met the missing primary"
    # An outage is a 503 to send again, never a 500 that reads as a bug.
    outage = {"503 database_unavailable", "409 idempotency_key_in_progress"}
    assert set(line.server_errors) <= outage, dict(line.server_errors)
    # 5xx while no node took writes, and only then (2 s of grace for requests begun before the promotion).
    late = [round(t - promoted_at, 2) for t in line.server_error_times if t > promoted_at + 2.0]
    early = [t for t in line.server_error_times if t < killed_at]
    assert not late and not early, f"5xx outside the outage: {len(early)} before, {late} s after the promotion"
    assert not line.unexpected, line.unexpected
    assert len(line.answers) == total
    assert before > 0 and at_promotion < total, "the failover did not fall mid-load"

    # What the fixtures were told.
    first = {a.ask.unit.serial: a for a in line.answers if a.ask.kind == "first"}
    assert sorted(first) == sorted(serials)
    wrong = [f"{a.ask.unit.serial}: {a.code}" for a in first.values() if a.code not in (None, "quota_exhausted")]
    assert not wrong, f"units refused for something else than the quota: {wrong}"
    issued = {s: a.certificate for s, a in first.items() if a.certificate is not None}
    assert len(set(issued.values())) == len(issued), "two units were handed the same certificate"
    for name, (quota, offered) in ORDERS.items():
        n = sum(1 for a in first.values() if a.ask.order == orders[name] and a.certificate is not None)
        assert n == min(quota, offered), f"order {name}: {n} units issued, quota {quota}, {offered} offered"
    retries = [a for a in line.answers if a.ask.kind == "retry"]
    for a in retries:
        original = first[a.ask.of]
        assert (a.certificate, a.code) == (original.certificate, original.code), f"retry of {a.ask.of}: {a}"
        assert a.certificate is None or a.replayed, f"retry of {a.ask.of} not marked replayed"
    held_before = {a.ask.unit.serial: a.certificate for a in line.answers[:at_kill] if a.certificate is not None}
    assert held_before and len(held_before) < len(issued), "no certificate on each side of the failover"

    # What the promoted node's books say: the same, exactly, those handed out by the dead primary included.
    recorded: dict[str, str] = {}
    for name, (quota, offered) in ORDERS.items():
        books = read_books(inst, orders[name])  # also: no order anywhere is over its quota
        mine = {s: pem for s, pem in issued.items() if first[s].ask.order == orders[name]}
        assert books.used == len(books.unit_pems) == min(quota, offered)
        assert books.unit_pems == mine, (
            f"order {name}: a certificate a fixture holds differs from, or is not in, the books"
        )
        assert sorted(books.provisioned_serials) == sorted(mine), f"order {name}: one provisioned event per unit"
        told = Counter(a.code for a in line.answers if a.ask.order == orders[name] and a.code is not None)
        assert books.refusal_codes == told, f"order {name}: refusal events {books.refusal_codes}, answers {told}"
        recorded.update(books.unit_pems)
    lost = {s for s, pem in held_before.items() if recorded.get(s) != pem}
    assert not lost, f"certificates handed out before the failover and unknown to the promoted node: {sorted(lost)}"
    seqs = assert_gap_free_events(inst)  # no gap, and the Merkle root recomputes from the entries

    t2 = time.monotonic()
    export = tmp_path / "export"
    run_ledger_cli(inst.home, "ledger", "export", str(export))  # the CLI, too, through the multi-host URL
    (tmp_path / "ledger.pub").write_text(run_ledger_cli(inst.home, "ledger", "key"))  # the key an auditor keeps
    verified = run_ledger_cli(inst.home, "audit", "verify", str(export), "--key", str(tmp_path / "ledger.pub"))
    assert f"verified: {len(seqs)} entries" in verified, verified
    took["export and verify"] = time.monotonic() - t2
    replayed_firsts = sum(1 for a in first.values() if a.replayed)
    print(
        f"{replication}; {total} requests from {FIXTURES} fixtures on 1x{WORKERS} processes; primary killed after "
        f"{at_kill} answers ({waiting} commits waiting for the stopped standby, {len(during_stall)} retries "
        f"answered during the stall), standby promoted after {at_promotion} in {promoted_at - killed_at:.2f} s; "
        f"{len(held_before)} certificates handed out before the kill, {len(issued)} in all, "
        f"{replayed_firsts} first asks answered by a replay; {dict(line.server_errors)} asked again, "
        f"{line.connections_lost} requests lost in transit; seconds: { {k: round(v, 1) for k, v in took.items()} }"
    )
