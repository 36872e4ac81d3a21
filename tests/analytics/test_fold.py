"""The analytics fold, without a database: hand-made events and stored records in, rollup rows and alerts out.

The projector's tests (tests/service/analytics/test_projection.py) prove the tables equal the fold of a real
line's log on both engines; these pin what the fold gathers from a few events whose rows can be
worked out by hand, and that folding in two batches (state carried as the store would carry it)
gathers the same as one.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fabguard.analytics.alerts import Acknowledgement, AckState, Alert, Severity, fold_batch_alerts, merge_alerts
from fabguard.analytics.fold import (
    Batch,
    Detectors,
    EventRow,
    Fold,
    Memory,
    RecordRow,
    UnitRow,
    check_copies,
    decode_details,
    fold_events,
    hour_of,
    minute_of,
    wanted,
)
from fabguard.analytics.settings import DEFAULT

T0 = datetime(2025, 3, 4, 10, 0, 30, tzinfo=UTC)
M0 = minute_of(T0)
SITES = {"fx-1": "cm-a", "fx-2": "cm-a"}


def event(
    seq: int,
    kind: str,
    *,
    at: datetime = T0,
    order: str | None = None,
    fixture: str | None = None,
    serial: str | None = None,
    code: str | None = None,
    actor: str | None = None,
    **detail: object,
) -> EventRow:
    return (seq, at, kind, order, fixture, serial, code, json.dumps(detail), actor)


def record_json(values: Mapping[str, float], *, fail: Sequence[str] = (), phase_outcome: str = "PASS") -> str:
    """A stored record of one phase ``rf`` with the given measurements (limits 0..10; ``fail`` ones FAIL)."""
    measurements = {
        name: {
            "name": name,
            "measured_value": v,
            "outcome": "FAIL" if name in fail else "PASS",
            "lower": 0.0,
            "upper": 10.0,
        }
        for name, v in values.items()
    }
    return json.dumps({"phases": [{"name": "rf", "outcome": phase_outcome, "measurements": measurements}]})


def recorded(
    seq: int, record_id: int, serial: str, outcome: str, *, fixture: str = "fx-1", at: datetime = T0
) -> EventRow:
    return event(
        seq,
        "test.recorded",
        at=at,
        fixture=fixture,
        serial=serial,
        actor=f"fixture:{fixture}",
        record_id=record_id,
        outcome=outcome,
        site_id=SITES[fixture],
    )


def fold(
    rows: Sequence[EventRow],
    records: Mapping[int, RecordRow],
    *,
    memory: Memory | None = None,
    known_units: Mapping[str, UnitRow] | None = None,
    seen: dict[str, str] | None = None,
) -> Batch:
    """What the projector does with one batch, with the store's reads given as values."""
    memory = memory if memory is not None else Memory(cursor=0)
    detectors = Detectors.from_settings(DEFAULT, SITES)
    details = decode_details(rows)
    record_ids, _ = wanted(rows, details)
    assert set(record_ids) <= set(records)
    batch = fold_events(memory, detectors, rows, details, records, dict(known_units or {}), SITES)
    check_copies(batch, detectors.copies, dict(seen or {}))
    return batch


def test_counted_events_are_counted_per_minute_kind_code_site_order_and_fixture() -> None:
    rows = [
        event(1, "order.created", order="po-1"),  # not a counted kind
        event(2, "unit.provisioned", order="po-1", fixture="fx-1", serial="SN1", site_id="cm-a"),
        event(3, "unit.refused", order="po-1", fixture="fx-2", serial="SN2", code="quota_exhausted"),
        event(4, "unit.refused", at=T0 + timedelta(minutes=1), order="po-1", fixture="fx-2", code="quota_exhausted"),
    ]
    batch = fold(rows, {})
    assert batch.last_seq == 4
    assert batch.fold.stats == {
        (M0, "unit.provisioned", "", "cm-a", "po-1", "fx-1"): 1,
        # No site in the event: the fixture's.
        (M0, "unit.refused", "quota_exhausted", "cm-a", "po-1", "fx-2"): 1,
        (M0 + 1, "unit.refused", "quota_exhausted", "cm-a", "po-1", "fx-2"): 1,
    }
    assert batch.fold.orders == {"po-1"}
    hits = {h.kind for h in batch.fold.hits}
    assert hits == {"quota_overrun"}
    assert [h.evidence for h in batch.fold.hits] == [(3,), (4,)]


def test_a_unit_retested_then_provisioned_moves_its_yield_to_the_order() -> None:
    records = {
        10: ("SN1", "fx-1", "FAIL", T0, record_json({"a": 11.0}, fail=["a"], phase_outcome="FAIL")),
        11: ("SN1", "fx-1", "PASS", T0 + timedelta(minutes=2), record_json({"a": 5.0})),
    }
    rows = [
        recorded(1, 10, "SN1", "FAIL"),
        recorded(2, 11, "SN1", "PASS", at=T0 + timedelta(minutes=2)),
        event(3, "unit.provisioned", order="po-1", fixture="fx-1", serial="SN1", site_id="cm-a"),
    ]
    f = fold(rows, records).fold
    # site, order, fixture, first minute, tests, first and last outcome
    assert f.units == {"SN1": ("cm-a", "po-1", "fx-1", M0, 2, "FAIL", "PASS")}
    # units, tests, first pass, final pass, retested: all of it under the order, none left without one
    assert f.yields == {(M0, "cm-a", "", "fx-1"): (0, 0, 0, 0, 0), (M0, "cm-a", "po-1", "fx-1"): (1, 2, 0, 1, 1)}
    assert f.stats[(M0, "test.recorded", "FAIL", "cm-a", "", "fx-1")] == 1
    assert f.stats[(M0 + 2, "test.recorded", "PASS", "cm-a", "", "fx-1")] == 1
    assert f.failures == {(M0, "cm-a", "", "fx-1", "rf", "a"): 1}
    assert f.activity == {"fx-1": (T0 + timedelta(minutes=2), 2)}


def test_a_batch_wants_the_records_it_names_and_the_units_it_provisions() -> None:
    rows = [
        recorded(1, 10, "SN1", "PASS"),
        event(2, "unit.provisioned", order="po-1", fixture="fx-1", serial="SN2"),
        event(3, "unit.provisioned", order="po-1", fixture="fx-1"),  # no serial: nothing to look up
        event(4, "test.refused", fixture="fx-1", code="invalid_record"),
    ]
    assert wanted(rows, decode_details(rows)) == ([10], {"SN2"})


def test_a_failed_phase_without_a_failed_measurement_counts_as_the_phase() -> None:
    records = {10: ("SN1", "fx-1", "FAIL", T0, record_json({"a": 1.0}, phase_outcome="FAIL"))}
    f = fold([recorded(1, 10, "SN1", "FAIL")], records).fold
    assert f.failures == {(M0, "cm-a", "", "fx-1", "rf", ""): 1}


def test_measurement_sums_are_about_the_first_value_with_moving_ranges_per_fixture() -> None:
    records = {
        10: ("SN1", "fx-1", "PASS", T0, record_json({"a": 4.0})),
        11: ("SN2", "fx-1", "PASS", T0, record_json({"a": 7.0})),
        12: ("SN3", "fx-1", "PASS", T0, record_json({"a": 5.0})),
    }
    memory = Memory(cursor=0)
    f = fold([recorded(i + 1, 10 + i, f"SN{i + 1}", "PASS") for i in range(3)], records, memory=memory).fold
    # n, sum and sum of squares of v - 4, low, high, moving ranges (3 + 2) over 2, fails, limits, ref
    assert f.measures == {
        (hour_of(T0), "cm-a", "fx-1"): {("rf", "a"): [3, 4.0, 10.0, 4.0, 7.0, 5.0, 2, 0, 0.0, 10.0, 4.0]}
    }
    assert memory.last_values == {"fx-1": {("rf", "a"): 5.0}}
    assert f.fixtures == {"fx-1"}


def test_records_copying_another_units_measurements_raise_one_alert_each() -> None:
    values = {"a": 1.25, "b": 2.5, "c": 3.75}
    records = {
        10: ("SN1", "fx-1", "PASS", T0, record_json(values)),
        11: ("SN2", "fx-2", "PASS", T0, record_json(values)),
    }
    batch = fold([recorded(1, 10, "SN1", "PASS"), recorded(2, 11, "SN2", "PASS", fixture="fx-2")], records)
    [digest] = batch.digests
    assert batch.fold.vectors == {digest: ("SN1", 10)}  # the first seen, once
    [hit] = [h for h in batch.fold.hits if h.kind == "copied_test_record"]
    assert hit.evidence == (2,) and "SN1" in hit.message and hit.severity == Severity.CRITICAL
    # The same vector seen in an earlier batch: the first record of this one is the copy.
    later = fold([recorded(3, 10, "SN1", "PASS")], records, seen={digest: "SN0"})
    assert later.fold.vectors == {}
    assert [h.evidence for h in later.fold.hits if h.kind == "copied_test_record"] == [(3,)]


def test_an_acknowledgement_is_gathered_not_counted() -> None:
    rows = [event(1, "alert.acknowledged", actor="admin", alert_id="quota_overrun.0123456789abcdef", up_to_seq=7)]
    f = fold(rows, {}).fold
    assert f.acks == [Acknowledgement("quota_overrun.0123456789abcdef", 7, "admin")]
    assert f.stats == {} and f.hits == []


def _line() -> tuple[list[EventRow], dict[int, RecordRow]]:
    records: dict[int, RecordRow] = {}
    rows: list[EventRow] = []
    seq = 0
    for i in range(12):
        at = T0 + timedelta(minutes=7 * i)
        serial, outcome = f"SN{i % 5}", "FAIL" if i % 3 == 0 else "PASS"
        fail = ["a"] if outcome == "FAIL" else []
        records[100 + i] = (serial, "fx-1", outcome, at, record_json({"a": 1.0 + i % 4, "b": 2.0 + i}, fail=fail))
        seq += 1
        rows.append(recorded(seq, 100 + i, serial, outcome, at=at))
        if i % 2:
            seq += 1
            rows.append(event(seq, "unit.provisioned", at=at, order="po-1", fixture="fx-1", serial=serial))
    return rows, records


def _add(total: dict[Any, Any], part: Mapping[Any, Any], add: Any = operator.add) -> None:
    for k, v in part.items():
        total[k] = add(total[k], v) if k in total else v


def test_two_batches_with_carried_state_gather_what_one_batch_does() -> None:
    rows, records = _line()
    whole = fold(rows, records).fold
    memory = Memory(cursor=0)
    first = fold(rows[:7], records, memory=memory)
    # What the store keeps between batches: the units' rows, the vectors, the detector state.
    second = fold(
        rows[7:],
        records,
        memory=memory,
        known_units=first.fold.units,
        seen={d: serial for d, (serial, _) in first.fold.vectors.items()},
    )
    stats: dict[Any, int] = {}
    yields: dict[Any, tuple[int, ...]] = {}
    failures: dict[Any, int] = {}
    for part in (first.fold, second.fold):
        _add(stats, part.stats)
        _add(yields, part.yields, lambda a, b: tuple(x + y for x, y in zip(a, b, strict=True)))
        _add(failures, part.failures)
    assert stats == whole.stats and failures == whole.failures
    assert {k: v for k, v in yields.items() if any(v)} == {k: v for k, v in whole.yields.items() if any(v)}
    assert {**first.fold.units, **second.fold.units} == whole.units
    assert [h.id for h in first.fold.hits + second.fold.hits] == [h.id for h in whole.hits]


def _alert(seq: int, *, kind: str = "quota_overrun", at: datetime = T0) -> Alert:
    return Alert(f"{kind}.0123456789abcdef", kind, Severity.HIGH, f"hit {seq}", (seq,), 1, at, at)


def test_a_batchs_hits_merge_into_stored_alerts_and_older_acknowledgements_are_ignored() -> None:
    stored_alert = _alert(3)
    stored: dict[str, tuple[Alert, AckState]] = {stored_alert.id: (stored_alert, ("ann", 3))}
    hit = _alert(9, at=T0 + timedelta(minutes=5))
    other = _alert(4, kind="key_reused")
    acks = [
        Acknowledgement(stored_alert.id, 2, "bob"),  # older than ann's: ignored
        Acknowledgement(other.id, 4, "cy"),  # of an alert raised in this very batch
        Acknowledgement("wrong_site.0000000000000000", 1, "dee"),  # of no alert: ignored
    ]
    changed = fold_batch_alerts(stored, [hit, other], acks)
    assert changed == [(other, ("cy", 4)), (merge_alerts(stored_alert, hit), ("ann", 3))]
    assert changed[1][0].evidence == (3, 9) and changed[1][0].count == 2
    # An acknowledgement alone touches its alert.
    assert fold_batch_alerts(stored, [], [Acknowledgement(stored_alert.id, 5, "bob")]) == [(stored_alert, ("bob", 5))]
    assert fold_batch_alerts(stored, [], []) == []


def test_an_empty_fold_has_nothing_to_write() -> None:
    assert Fold() == Fold() and not Fold().stats and Batch(Fold(), 0, []).digests == []
