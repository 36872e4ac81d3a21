"""The projector's tables, row for row, as the projector of session 10 wrote them (before the catch-up
was made faster): a fixed log of events and test records is folded in one go, in many small rounds
(some reloading the detector state from the database, as when processes take turns) and across a
restart (a new ``Instance`` on the same database), and every table the projection writes is compared
with what the earlier code wrote for the same log and the same rounds, by a digest of its rows.

Float sums depend on how the events were grouped into batches (each batch's sums are added to the
rows already there), so each way of folding has its own digests; everything else is the same in all
three, which the test checks too. The digests were taken with the code of commit 31eba51 on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Table, delete, insert, select, update

from fabguard.analytics.alerts import alert_id
from fabguard.ledger.entry import encode_entry
from fabguard.service.analytics import dashboard_queries, projection
from fabguard.service.core.instance import Instance
from fabguard.store import rollups
from fabguard.store.analytics_models import AlertRow
from fabguard.store.eventlog import EVENT_COUNTER
from fabguard.store.models import Counter, Event, Fixture, Site, TestRecordRow

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
FIXTURES = [("fx-a-0", "site-a"), ("fx-a-1", "site-a"), ("fx-b-0", "site-b"), ("fx-b-1", "site-b")]
# (phase, name, nominal, sigma, lower, upper)
SPECS = [
    ("power", "v_rail", 3.3, 0.02, 3.2, 3.4),
    ("power", "i_idle", 0.05, 0.002, 0.04, 0.06),
    ("power", "ripple", 0.01, 0.001, 0.0, 0.02),
    ("radio", "rssi", -40.0, 1.0, -45.0, -35.0),
    ("radio", "freq", 2.4e9, 1.0, 2.4e9 - 10, 2.4e9 + 10),
    ("radio", "gain", 12.0, 0.2, 11.0, 13.0),
]
RECORDS = 700


def _record(serial: str, station: str, start_ms: int, values: list[float | None], failed: int | None) -> str:
    phases: dict[str, dict[str, Any]] = {}
    for k, (phase, name, _, _, lower, upper) in enumerate(SPECS):
        p = phases.setdefault(phase, {"name": phase, "outcome": "PASS", "measurements": {}})
        v = values[k]
        ok = v is not None and v == v and lower <= v <= upper and k != failed
        if not ok:
            p["outcome"] = "FAIL"
        p["measurements"][name] = {
            "name": name,
            "measured_value": v,
            "outcome": "PASS" if ok else "FAIL",
            "validators": [f"{lower} <= x <= {upper}"],
        }
    outcome = "PASS" if all(p["outcome"] == "PASS" for p in phases.values()) else "FAIL"
    body = {
        "dut_id": serial,
        "station_id": station,
        "start_time_millis": start_ms,
        "end_time_millis": start_ms + 400,
        "outcome": outcome,
        "phases": list(phases.values()),
    }
    return json.dumps(body)  # NaN stays NaN, as Python's json writes it


class Log:
    """Builds the fixed log: test records (passing, failing, retested, copied, one drifting measurement,
    one unreadable body, one NaN), units provisioned on orders (some twice), refusals and an acknowledgement."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []

    def event(self, at: datetime, kind: str, fixture: str | None, serial: str | None, **kw: Any) -> None:
        seq = len(self.events) + 1
        detail = kw.pop("detail", {})
        fields = {
            "at": at,
            "kind": kind,
            "actor": kw.pop("actor", f"fixture:{fixture}" if fixture else "admin"),
            "order_id": kw.pop("order_id", None),
            "fixture_id": fixture,
            "serial": serial,
            "code": kw.pop("code", None),
        }
        entry = encode_entry(seq=seq, detail=detail, **fields)
        self.events.append({**fields, "seq": seq, "detail": json.dumps(detail, sort_keys=True), "entry": entry})

    def build(self) -> Log:
        rng = random.Random(11)
        last: list[float | None] = []
        for i in range(RECORDS):
            at = T0 + timedelta(seconds=17 * i)
            fixture, site = FIXTURES[i % len(FIXTURES)]
            retest = i % 97 == 50
            serial = f"SN{i - 4 if retest else i:06d}"
            values: list[float | None] = [rng.gauss(n, s) for _, _, n, s, _, _ in SPECS]
            if i > 450:  # the rail drifts up at every site
                values[0] = cast(float, values[0]) + 0.06
            if i % 53 == 20 and last:  # a copy of the record before
                values = list(last)
            if i == 333:
                values[2] = float("nan")
            failed = 5 if i % 31 == 7 else None
            record_json = _record(serial, fixture, int(at.timestamp() * 1000), values, failed)
            if i == 222:
                record_json = '{"phases": ['  # unreadable: counted, not measured
            outcome = json.loads(record_json)["outcome"] if i != 222 else "FAIL"
            self.records.append(
                {"id": i + 1, "serial": serial, "fixture_id": fixture, "site_id": site,
                 "declared_station_id": fixture, "outcome": outcome, "start_ms": int(at.timestamp() * 1000),
                 "end_ms": int(at.timestamp() * 1000) + 400, "measurement_count": len(SPECS),
                 "received_at": at, "record_json": record_json}
            )  # fmt: skip
            detail = {"outcome": outcome, "record_id": i + 1, "site_id": site, "station_id": fixture}
            self.event(at, "test.recorded", fixture, serial, detail=detail)
            last = values
            if outcome == "PASS":
                order = f"po-{site}" if i % 29 else "po-other"
                self.event(at, "unit.provisioned", fixture, serial, order_id=order, detail={"site_id": site})
                if i % 41 == 3:  # provisioned again on another order: counts for the first only
                    self.event(at, "unit.provisioned", fixture, serial, order_id="po-late", detail={"site_id": site})
            if i % 67 == 9:
                self.event(at, "unit.refused", fixture, serial, order_id=f"po-{site}", code="quota_exhausted")
            if i % 151 == 30:
                self.event(at, "request.refused", fixture, None, code="fixture_revoked")
            if i == 400:
                ack = {"alert_id": alert_id("quota_overrun", "po-site-a"), "up_to_seq": len(self.events)}
                self.event(at, "alert.acknowledged", None, None, actor="alice", detail=ack)
            if i % 5 == 0:
                self.event(at, "site.updated", None, None)  # neither counted nor detected
        return self


def store(inst: Instance, log: Log) -> None:
    """Only this log in the event log, and its fixtures and records (what the projector reads)."""
    with inst.db.transaction() as s:
        s.execute(delete(Event))
        for site in ("site-a", "site-b"):
            s.execute(insert(Site).values(id=site, name=site, created_at=T0))
        for fixture, site in FIXTURES:
            s.execute(insert(Fixture).values(id=fixture, site_id=site, created_at=T0))
        s.execute(insert(TestRecordRow), log.records)
        s.execute(insert(Event), log.events)
        s.execute(update(Counter).where(Counter.name == EVENT_COUNTER).values(value=len(log.events)))


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(v, float | Decimal):
        return repr(float(v))
    return v


def digests(inst: Instance) -> dict[str, str]:
    """Every projected table's rows (in key order, values made engine-neutral), as a short digest each."""
    out = {}
    with inst.db.read() as s:
        for model in rollups.PROJECTED:
            table = cast(Table, model.__table__)
            rows = s.execute(select(table).order_by(*table.primary_key.columns)).all()
            text = json.dumps([[_plain(v) for v in row] for row in rows])
            out[table.name] = f"{len(rows)}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    return out


def fold_at_once(inst: Instance) -> None:
    projection.advance(inst, dashboard_queries.load_settings(inst), batch=100_000)


def fold_in_rounds(inst: Instance) -> None:
    settings = dashboard_queries.load_settings(inst)
    rounds = 0
    while True:
        rounds += 1
        if rounds % 3 == 0:
            projection.forget_memory(inst)  # reloaded from the database, as when another process folded
        if projection.advance(inst, settings, max_events=37, batch=37).events == 0:
            break


def fold_across_a_restart(inst: Instance) -> Instance:
    projection.advance(inst, dashboard_queries.load_settings(inst), max_events=500, batch=200)
    home = inst.home
    inst.close()
    again = Instance.open(home)
    projection.advance(again, dashboard_queries.load_settings(again), batch=5000)
    return again


# Taken with the code of commit 31eba51 (the projector before this session's changes).
GOLDEN: dict[str, dict[str, str]] = {
    "at_once": {"alerts": "21:65da4e7359581413", "analytics_state": "21:af4850a1b3f1cd71", "failure_hours": "21:a72ec13a8cdcf86d", "failure_minutes": "30:ed6f9fa2343d4057", "fixture_activity": "4:d0b12994d0bc39c6", "measurement_hours": "96:8df7c28d47be4db9", "stats_hours": "91:3acd093dfdfcc6e2", "stats_minutes": "1402:c07944eb2bc2be06", "stats_totals": "28:9fa7e058ece47965", "test_vectors": "686:72dd50587f1fa32b", "unit_tests": "693:d925a7349953ec9c", "yield_hours": "46:91f54dd079a95575", "yield_minutes": "693:aaaf7cc4028a4700"},
    "in_rounds": {"alerts": "21:65da4e7359581413", "analytics_state": "21:af4850a1b3f1cd71", "failure_hours": "21:a72ec13a8cdcf86d", "failure_minutes": "30:ed6f9fa2343d4057", "fixture_activity": "4:d0b12994d0bc39c6", "measurement_hours": "96:5ff816bcf61bf887", "stats_hours": "91:3acd093dfdfcc6e2", "stats_minutes": "1402:c07944eb2bc2be06", "stats_totals": "28:9fa7e058ece47965", "test_vectors": "686:72dd50587f1fa32b", "unit_tests": "693:d925a7349953ec9c", "yield_hours": "47:118e1ee86492dab0", "yield_minutes": "710:f2173212ecd81d71"},
    "across_a_restart": {"alerts": "21:65da4e7359581413", "analytics_state": "21:af4850a1b3f1cd71", "failure_hours": "21:a72ec13a8cdcf86d", "failure_minutes": "30:ed6f9fa2343d4057", "fixture_activity": "4:d0b12994d0bc39c6", "measurement_hours": "96:0cfd6ea51bbe485f", "stats_hours": "91:3acd093dfdfcc6e2", "stats_minutes": "1402:c07944eb2bc2be06", "stats_totals": "28:9fa7e058ece47965", "test_vectors": "686:72dd50587f1fa32b", "unit_tests": "693:d925a7349953ec9c", "yield_hours": "46:91f54dd079a95575", "yield_minutes": "695:ba053d2494bb48c4"},
}  # fmt: skip


def test_only_the_batch_dependent_rows_differ_between_the_ways_of_folding() -> None:
    """Float sums are grouped by batch, and a unit's move to its order leaves rows of zeros in the batch
    it spans; every other table is the same however the log was folded."""
    varying = {"measurement_hours", "yield_minutes", "yield_hours"}
    same = [{t: d for t, d in g.items() if t not in varying} for g in GOLDEN.values()]
    assert same[0] == same[1] == same[2]


@pytest.mark.parametrize("how", ["at_once", "in_rounds", "across_a_restart"])
def test_the_projection_is_row_for_row_what_it_was(any_instance: Instance, how: str) -> None:
    inst = any_instance
    store(inst, Log().build())
    if how == "at_once":
        fold_at_once(inst)
    elif how == "in_rounds":
        fold_in_rounds(inst)
    else:
        inst = fold_across_a_restart(inst)
    try:
        got = digests(inst)
        with inst.db.read() as s:
            assert rollups.read_cursor(s) == len(Log().build().events)
        assert got == GOLDEN[how]
        with inst.db.read() as s:
            kinds = {k for (k,) in s.execute(select(AlertRow.kind))}
        assert {"copied_test_record", "measurement_drift", "quota_overrun", "untrusted_fixture"} <= kinds
    finally:
        if inst is not any_instance:
            inst.close()
