"""Each detector fires on what it exists to catch and stays quiet on a clean line."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from fabguard.analytics import (
    Acknowledgement,
    CopiedTestRecords,
    EventFact,
    MeasuredValue,
    Severity,
    TestFact,
    ThroughputSpike,
    UntrustedFixture,
    closed_order,
    detect_all,
    duplicate_serial,
    key_reuse,
    quota_overrun,
    untested_units,
    with_acknowledgements,
    wrong_site,
)

T0 = datetime(2025, 1, 1, 6, 0, tzinfo=UTC)


def _seq() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


def clean_line(units: int = 120, per_hour: int = 60) -> list[EventFact]:
    """A steady line: each unit tested (some retested) and provisioned once, at a steady rate."""
    seq = _seq()
    rng = random.Random(1)
    events: list[EventFact] = []
    for i in range(units):
        at = T0 + timedelta(hours=i / per_hour)
        serial = f"SN{i:06d}"
        site = {"site_id": "cm-a"}
        if rng.random() < 0.05:
            events.append(
                EventFact(next(seq), at, "test.recorded", None, "f1", serial, None, {"outcome": "FAIL", **site})
            )
        events.append(EventFact(next(seq), at, "test.recorded", None, "f1", serial, None, {"outcome": "PASS", **site}))
        events.append(EventFact(next(seq), at, "unit.provisioned", "po-1", "f1", serial, None, site))
    return events


def clean_records(n: int = 50) -> list[TestFact]:
    rng = random.Random(2)
    return [
        TestFact(
            i,
            f"SN{i:06d}",
            "f1",
            "PASS",
            T0,
            tuple(MeasuredValue("p", name, round(rng.gauss(1, 0.01), 6), 0.9, 1.1) for name in ("a", "b", "c", "d")),
            seq=1000 + i,
        )
        for i in range(n)
    ]


def refused(
    seq: int, code: str, serial: str = "SNX", *, kind: str = "unit.refused", fixture: str | None = "f1"
) -> EventFact:
    return EventFact(
        seq,
        T0 + timedelta(hours=3),
        kind,
        "po-1" if kind == "unit.refused" else None,
        fixture,
        serial,
        code,
        {"site_id": "cm-a"},
    )


def test_a_clean_line_raises_no_alert() -> None:
    assert detect_all(clean_line(), clean_records()) == []


def test_attempts_past_the_quota_raise_one_alert_per_order() -> None:
    events = [*clean_line(), refused(9001, "quota_exhausted", "SN1"), refused(9002, "quota_exhausted", "SN2")]
    (alert,) = quota_overrun().detect(events)
    assert (alert.kind, alert.severity, alert.order_id, alert.site_id, alert.count) == (
        "quota_overrun",
        Severity.HIGH,
        "po-1",
        "cm-a",
        2,
    )
    assert alert.evidence == (9001, 9002)
    assert quota_overrun().detect(clean_line()) == []


def test_a_serial_with_another_key_is_a_critical_duplicate() -> None:
    (alert,) = duplicate_serial().detect([*clean_line(), refused(9001, "serial_has_other_key", "SN000003")])
    assert alert.severity is Severity.CRITICAL and "SN000003" in alert.message
    assert duplicate_serial().detect(clean_line()) == []


def test_a_reused_key_is_a_critical_clone_alert() -> None:
    (alert,) = key_reuse().detect([*clean_line(), refused(9001, "key_reused", "SN-CLONE")])
    assert alert.kind == "key_reused" and alert.severity is Severity.CRITICAL and alert.fixture_id == "f1"
    assert key_reuse().detect(clean_line()) == []


def test_unknown_and_revoked_fixtures_raise_alerts_per_fixture_and_reason() -> None:
    events = [
        *clean_line(),
        refused(9001, "unknown_fixture", kind="request.refused", fixture=None),
        refused(9002, "fixture_revoked", kind="request.refused", fixture="f9"),
        refused(9003, "fixture_revoked", kind="request.refused", fixture="f9"),
    ]
    alerts = {a.severity: a for a in UntrustedFixture().detect(events)}
    assert alerts[Severity.CRITICAL].fixture_id == "f9" and alerts[Severity.CRITICAL].count == 2
    assert alerts[Severity.HIGH].evidence == (9001,)
    assert UntrustedFixture().detect(clean_line()) == []


def test_provisioning_without_a_passing_test_raises_an_alert() -> None:
    (alert,) = untested_units().detect([*clean_line(), refused(9001, "test_missing"), refused(9002, "test_failed")])
    assert alert.count == 2 and alert.kind == "untested_unit"
    assert untested_units().detect(clean_line()) == []


def test_a_fixture_of_another_site_raises_a_wrong_site_alert() -> None:
    (alert,) = wrong_site().detect([*clean_line(), refused(9001, "wrong_site", "SN-ELSEWHERE")])
    assert alert.kind == "wrong_site" and alert.severity is Severity.HIGH and alert.order_id == "po-1"
    assert "another site" in alert.message and "SN-ELSEWHERE" in alert.message
    assert wrong_site().detect(clean_line()) == []


def test_provisioning_on_an_order_that_is_not_open_raises_one_alert_per_order() -> None:
    codes = ("order_inactive", "order_expired", "order_not_yet_valid", "order_not_found", "quota_exhausted")
    hits = closed_order().detect([*clean_line(), *(refused(9001 + i, code) for i, code in enumerate(codes))])
    (alert,) = hits
    assert alert.kind == "closed_order" and alert.evidence == (9001, 9002, 9003, 9004)  # quota is not its business
    assert closed_order().detect(clean_line()) == []


def test_throughput_past_a_rated_rate_raises_an_alert() -> None:
    assert ThroughputSpike(rated_per_hour=120).detect(clean_line(per_hour=60)) == []
    (alert,) = ThroughputSpike(rated_per_hour=120).detect(clean_line(per_hour=600))
    assert alert.kind == "throughput_spike" and "rated 120" in alert.message


def test_throughput_many_sigma_over_its_own_history_raises_an_alert() -> None:
    steady = clean_line(units=240, per_hour=60)
    burst_start = T0 + timedelta(hours=4, minutes=1)
    burst = [
        EventFact(10_000 + i, burst_start + timedelta(seconds=i), "unit.provisioned", "po-1", "f2", f"SNB{i}", None, {})
        for i in range(40)
    ]
    (alert,) = ThroughputSpike().detect([*steady, *burst])
    # Hits come as units land: evidence starts with the unit that took the bucket past the limit.
    assert set(range(10_010, 10_040)) <= set(alert.evidence) <= set(range(10_000, 10_040))
    assert "sigma" in alert.message and alert.fixture_id == "f2"
    assert ThroughputSpike().detect(steady) == []


def test_identical_measurement_vectors_on_different_serials_are_copied_records() -> None:
    records = clean_records()
    original = records[7]
    copy = TestFact(999, "SN-COPY", "f2", "PASS", T0, original.measurements, seq=5000, site_id="cm-b")
    (alert,) = CopiedTestRecords().detect([*records, copy])
    assert alert.severity is Severity.CRITICAL and alert.fixture_id == "f2" and alert.site_id == "cm-b"
    assert set(alert.evidence) == {5000}  # the copy; the message names the serial it copies
    assert "SN-COPY" in alert.message and original.serial in alert.message
    # A retest of the same serial that happens to repeat its values is not a copy.
    same_serial = TestFact(1000, original.serial, "f1", "PASS", T0, original.measurements, seq=5001)
    assert CopiedTestRecords().detect([*records, same_serial]) == []


def test_alert_ids_are_stable_and_acknowledgement_covers_only_what_was_seen() -> None:
    first = quota_overrun().detect([refused(1, "quota_exhausted")])[0]
    later = quota_overrun().detect([refused(1, "quota_exhausted"), refused(2, "quota_exhausted")])[0]
    assert first.id == later.id
    (acked,) = with_acknowledgements([first], [Acknowledgement(first.id, 1, "alice")])
    assert acked.acknowledged and acked.acknowledged_by == "alice"
    (reopened,) = with_acknowledgements([later], [Acknowledgement(first.id, 1, "alice")])
    assert not reopened.acknowledged
