"""Storing test records: a batch is checked record by record and stored in one transaction, its events
appended in upload order with their Merkle leaves, and the ledger stays whole under concurrent uploads,
a failure in the middle of a batch and a process killed while storing one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, SiteId
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.ledger import merkle
from fabguard.service.catalog import fixtures
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.service.provisioning import testrecords
from fabguard.store import eventlog
from fabguard.store.eventlog import event_count
from fabguard.store.models import Event, LedgerNode, TestRecordRow
from tests.support import World

ROOT = Path(__file__).resolve().parents[3]  # the repository (tests/service/provisioning/ is three below it)


def records(station: str, first: int, n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [openhtf_record(f"SN{first + i:08d}", station, fail=rng.random() < 0.2, rng=rng) for i in range(n)]


def assert_ledger_whole(inst: Instance) -> list[Event]:
    """Events 1..N without a gap, the counter at N, every stored Merkle node the hash of its subtree and
    every complete subtree stored, each test record named by exactly one ``test.recorded`` event."""
    with inst.db.read() as s:
        events = list(s.execute(select(Event).order_by(Event.seq)).scalars())
        nodes = {(n.level, n.idx): bytes(n.hash) for n in s.execute(select(LedgerNode)).scalars()}
        stored = {r.id: (r.serial, r.outcome) for r in s.execute(select(TestRecordRow)).scalars()}
        counter = event_count(s)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert counter == len(events)
    want: dict[tuple[int, int], bytes] = {}
    hashes = [merkle.leaf_hash(bytes(e.entry)) for e in events]
    level = 0
    while hashes:
        want.update({(level, i): h for i, h in enumerate(hashes)})
        hashes = [merkle.node_hash(hashes[2 * i], hashes[2 * i + 1]) for i in range(len(hashes) // 2)]
        level += 1
    assert nodes == want
    for e in events:
        entry = json.loads(e.entry)
        assert (entry["index"], entry["kind"], entry["serial"]) == (e.seq - 1, e.kind, e.serial)
        assert entry["detail"] == json.loads(e.detail)
    named = [json.loads(e.detail)["record_id"] for e in events if e.kind == "test.recorded"]
    assert sorted(named) == sorted(stored), "a record without its event, or an event without its record"
    for e in events:
        if e.kind == "test.recorded":
            detail = json.loads(e.detail)
            assert stored[detail["record_id"]] == (e.serial, detail["outcome"])
    assert merkle_log.tree_head(inst)[1] == merkle.mth([merkle.leaf_hash(bytes(e.entry)) for e in events])
    return events


def test_a_batch_keeps_upload_order_and_refuses_only_the_bad_records(any_world: World) -> None:
    inst = any_world.inst
    fixtures.create_fixture(inst, fixture_id=FixtureId("fx-1"), site_id=SiteId("cm-a"), actor="test")
    fx = FixtureFacts("fx-1", "cm-a", False)
    good = records("fx-1", 1, 3)
    bad_serial = {**good[0], "dut_id": "bad serial\n"}
    bad_outcome = {**good[1], "dut_id": "SN99999999", "outcome": "MAYBE"}
    with inst.db.read() as s:
        before = event_count(s)
    results = testrecords.record_tests(inst, fx, [good[0], bad_serial, good[1], bad_outcome, good[2]])
    assert [r["status"] for r in results] == ["stored", "refused", "stored", "refused", "stored"]
    assert [r["error"]["code"] for r in results if r["status"] == "refused"] == [
        "serial_invalid",
        "test_record_invalid",
    ]
    events = assert_ledger_whole(inst)[before:]
    assert [(e.kind, e.serial) for e in events] == [
        ("test.recorded", "SN00000001"),
        ("test.refused", None),  # a serial that is not one is not logged as one
        ("test.recorded", "SN00000002"),
        ("test.refused", "SN99999999"),
        ("test.recorded", "SN00000003"),
    ]
    assert [json.loads(e.detail).get("record_id") for e in events[::2]] == [r["id"] for r in results[::2]]
    assert "MAYBE" in json.loads(events[3].detail)["message"]
    with inst.db.read() as s:
        assert s.execute(select(func.count()).select_from(TestRecordRow)).scalar_one() == 3
    # A single upload goes the same way.
    with pytest.raises(testrecords.TestRecordInvalid):
        testrecords.record_test(inst, fx, bad_outcome)
    assert testrecords.record_test(inst, fx, records("fx-1", 7, 1)[0]).serial == "SN00000007"
    assert [e.kind for e in assert_ledger_whole(inst)[-2:]] == ["test.refused", "test.recorded"]


def test_concurrent_batches_and_single_uploads_keep_the_ledger_whole(any_world: World) -> None:
    """Four stations upload batches over mutual TLS while two upload one record at a time."""
    clients = [any_world.fixture(f"fx-{i}") for i in range(6)]
    errors: list[BaseException] = []
    stored: list[int] = []
    batches: list[list[int]] = []

    def station(i: int) -> None:
        try:
            client = clients[i]
            for round_ in range(4):
                batch = records(f"fx-{i}", i * 10_000 + round_ * 40, 40, seed=i * 100 + round_)
                if i < 4:
                    batch[round_ * 7] = {"dut_id": f"SN{i}{round_}", "outcome": "PASS"}  # refused: no times
                    results = client.upload_test_records(batch)
                    assert sum(r["status"] == "refused" for r in results) == 1
                    batches.append([r["id"] for r in results if r["status"] == "stored"])
                    stored.extend(batches[-1])
                else:
                    stored.extend(client.upload_test_record(r)["id"] for r in batch[:10])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=station, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    events = assert_ledger_whole(any_world.inst)
    assert len(stored) == 4 * 4 * 39 + 2 * 4 * 10 == len(set(stored))
    assert sum(e.kind == "test.refused" for e in events) == 16
    # Each batch's 40 events are consecutive: nothing of another upload lands inside one.
    seq_of = {json.loads(e.detail)["record_id"]: e.seq for e in events if e.kind == "test.recorded"}
    assert len(batches) == 16
    for ids in batches:
        seqs = [seq_of[i] for i in ids]
        assert max(seqs) - min(seqs) <= 39


def test_a_failure_mid_batch_stores_nothing_and_a_retry_stores_each_record_once(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = any_world.inst
    fixtures.create_fixture(inst, fixture_id=FixtureId("fx-1"), site_id=SiteId("cm-a"), actor="test")
    fx = FixtureFacts("fx-1", "cm-a", False)
    testrecords.record_tests(inst, fx, records("fx-1", 1, 5))
    before = assert_ledger_whole(inst)
    batch = records("fx-1", 100, 30, seed=4)

    def broken(*_: Any) -> None:
        raise RuntimeError("the database went away")

    # After the records and the events are written, before the Merkle nodes.
    monkeypatch.setattr(eventlog, "_append_leaves", broken)
    with pytest.raises(RuntimeError):
        testrecords.record_tests(inst, fx, batch)
    monkeypatch.undo()
    assert [e.seq for e in assert_ledger_whole(inst)] == [e.seq for e in before]
    results = testrecords.record_tests(inst, fx, batch)
    assert all(r["status"] == "stored" for r in results)
    after = assert_ledger_whole(inst)
    assert len(after) == len(before) + 30
    assert sorted(e.serial for e in after[len(before) :]) == sorted(r["dut_id"] for r in batch)


UPLOADER = """
import random, sys, time
from pathlib import Path
from fabguard.domain.issuance import FixtureFacts
from fabguard.store import eventlog
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.provisioning import testrecords
from fabguard.service.core.instance import Instance
inst = Instance.open(Path(sys.argv[1]))
fx = FixtureFacts(sys.argv[2], "cm-a", False)
target = int(sys.argv[3])
rng = random.Random(sys.argv[2])
leaves = eventlog._append_leaves
def held(*args):  # batch ``target``: its records and events written, its Merkle nodes not, and wait
    if b == target:
        print("held", flush=True)
        time.sleep(600)
    leaves(*args)
eventlog._append_leaves = held
for b in range(1000):
    batch = [openhtf_record(f"{sys.argv[2]}-{b}-{i}", fx.id, fail=False, rng=rng) for i in range(100)]
    batch[b % 100] = {"dut_id": "SN0", "outcome": "PASS"}
    testrecords.record_tests(inst, fx, batch)
    print(b, flush=True)
"""


def test_uploaders_killed_mid_batch_leave_whole_batches_and_a_whole_ledger(any_world: World) -> None:
    """Two processes store batches of 100 and are SIGKILLed inside a batch's transaction (its records and
    events written, its Merkle nodes not yet): the batches they finished are all there, the one they were
    writing not at all, and the log goes on from where they stopped."""
    inst = any_world.inst
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    names, targets = ("fx-k1", "fx-k2"), (3, 5)
    for name in names:
        fixtures.create_fixture(inst, fixture_id=FixtureId(name), site_id=SiteId("cm-a"), actor="test")
    finished: dict[str, int] = {}

    def run(name: str, target: int) -> None:
        # On SQLite the one held blocks the other's writes until it is killed: each is killed by its own
        # reader as soon as it holds, whichever comes first.
        proc = subprocess.Popen(
            [sys.executable, "-c", UPLOADER, str(inst.home), name, str(target)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        done = 0
        for line in proc.stdout:
            if line.strip() == "held":
                proc.send_signal(signal.SIGKILL)
                break
            done += 1
        proc.wait()
        finished[name] = done

    threads = [threading.Thread(target=run, args=pair) for pair in zip(names, targets, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert finished == dict(zip(names, targets, strict=True)), "an uploader died by itself"
    events = assert_ledger_whole(inst)
    per_batch: dict[str, int] = {}
    for e in events:
        if e.kind == "test.recorded":
            fixture, b, _ = e.serial.rsplit("-", 2)
            per_batch[f"{fixture}-{b}"] = per_batch.get(f"{fixture}-{b}", 0) + 1
    assert set(per_batch.values()) == {99}, "a batch was stored in part"
    assert [sum(b.startswith(f"{n}-") for b in per_batch) for n in names] == list(targets)
    # The log goes on.
    fx = FixtureFacts("fx-k1", "cm-a", False)
    testrecords.record_tests(inst, fx, records("fx-k1", 500, 10))
    assert len(assert_ledger_whole(inst)) == len(events) + 10
