"""bench/growth.py measures the write path against millions of stored units only if its loader stores them
as the server would: every event's entry is what ``encode_entry`` makes of its row, and the ledger's nodes
are the Merkle tree of those entries, with provisioning through the service in between loads (both engines)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import func, select

from fabguard.ledger import merkle
from fabguard.ledger.entry import encode_entry
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.store.models import Event, LedgerNode, Order, TestRecordRow, Unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "growth.py"


@pytest.fixture(scope="module")
def growth() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_growth", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_growth"] = module
    spec.loader.exec_module(module)
    return module


def test_loaded_units_leave_the_ledger_the_server_would(
    any_instance: Instance, growth: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = any_instance
    monkeypatch.setattr(growth, "BATCH", 97)  # several batches, the last one short
    growth.prepare(inst, 1000)
    growth.preload(inst, 0, 301)
    growth.provision(inst, 3, 1)
    growth.preload(inst, 301, 400)  # on top of the service's own units and events
    growth.provision(inst, 3, 2)
    with inst.db.read() as s:
        tree, expected = merkle.CompactRange(), {}
        for ev in s.scalars(select(Event).order_by(Event.seq)):
            entry = encode_entry(
                seq=ev.seq, at=ev.at, kind=ev.kind, actor=ev.actor, order_id=ev.order_id, fixture_id=ev.fixture_id,
                serial=ev.serial, code=ev.code, detail=json.loads(ev.detail),
            )  # fmt: skip
            assert bytes(ev.entry) == entry, ev.seq
            assert ev.detail == json.dumps(json.loads(ev.detail), sort_keys=True, separators=(",", ":"))
            for level, idx, h in tree.append(merkle.leaf_hash(entry)):
                expected[(level, idx)] = h
        stored = {(n.level, n.idx): bytes(n.hash) for n in s.scalars(select(LedgerNode))}
        assert stored == expected
        assert s.scalar(select(func.count()).select_from(Unit)) == 707
        assert s.scalar(select(func.count()).select_from(TestRecordRow)) == 707
        assert s.get(Order, growth.OLD_ORDER).used == 701  # type: ignore[union-attr]
        kinds = s.execute(select(Event.kind, func.count()).group_by(Event.kind)).all()
    assert dict(kinds)["unit.provisioned"] == 707 and dict(kinds)["test.recorded"] == 707
    assert merkle_log.tree_head(inst) == (tree.size, tree.root())
