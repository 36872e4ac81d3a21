"""Activity outside a site's working hours, judged in the site's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fabguard.analytics import EventFact, OffHoursActivity, Severity, WorkingHours, parse_working_hours

SHANGHAI = parse_working_hours({"cm-a": ("06:00", "22:00", "Asia/Shanghai")})


def event(seq: int, at: datetime, kind: str = "unit.provisioned", *, site: str | None = "cm-a") -> EventFact:
    return EventFact(seq, at, kind, "po-1", "f1", f"SN{seq}", None, {"site_id": site} if site else {})


def day_shift() -> list[EventFact]:
    """06:00 to 21:59 Shanghai time (22:00 to 13:59 UTC the day before), one unit every ten minutes."""
    start = datetime(2025, 3, 2, 22, 0, tzinfo=UTC)
    return [event(i + 1, start + timedelta(minutes=10 * i)) for i in range(96)]


def test_a_line_working_its_hours_is_quiet() -> None:
    assert OffHoursActivity(SHANGHAI).detect(day_shift()) == []


def test_provisioning_at_night_local_time_raises_one_alert_per_site_and_night() -> None:
    night = datetime(2025, 3, 3, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai, 15:30 in UTC (daytime there)
    events = [
        *day_shift(),
        event(500, night),
        event(501, night + timedelta(minutes=5), "test.recorded"),
        event(502, night + timedelta(days=1)),
    ]
    first, second = OffHoursActivity(SHANGHAI).detect(events)
    assert (first.kind, first.severity, first.site_id, first.evidence) == (
        "off_hours_activity",
        Severity.HIGH,
        "cm-a",
        (500, 501),
    )
    assert "2025-03-03" in first.message and "latest line activity at 23:35" in first.message
    assert "Asia/Shanghai" in first.message and first.first_at == night
    assert second.evidence == (502,) and second.id != first.id
    # The same night seen again later keeps its id, so an acknowledgement sticks.
    assert OffHoursActivity(SHANGHAI).detect([event(500, night)])[0].id == first.id


def test_the_site_comes_from_the_fixture_when_the_event_does_not_name_it() -> None:
    refused = event(9, datetime(2025, 3, 3, 19, 0, tzinfo=UTC), "request.refused", site=None)
    assert OffHoursActivity(SHANGHAI).detect([refused]) == []
    (alert,) = OffHoursActivity(SHANGHAI, {"f1": "cm-a"}).detect([refused])
    assert alert.severity is Severity.WARNING and alert.fixture_id == "f1"


def test_sites_without_hours_and_non_line_events_are_not_judged() -> None:
    at = datetime(2025, 3, 3, 19, 0, tzinfo=UTC)
    assert OffHoursActivity(SHANGHAI).detect([event(1, at, site="cm-b"), event(2, at, "alert.acknowledged")]) == []


def test_a_night_shift_spans_midnight_and_daylight_saving_is_followed() -> None:
    night = WorkingHours.parse("22:00", "06:00", "Europe/Berlin")
    assert night.contains(datetime(2025, 1, 15, 22, 30, tzinfo=UTC))  # 23:30 CET
    assert night.contains(datetime(2025, 1, 15, 4, 0, tzinfo=UTC))  # 05:00 CET
    assert not night.contains(datetime(2025, 1, 15, 5, 30, tzinfo=UTC))  # 06:30 CET
    # 04:30 UTC is 05:30 in winter (inside) but 06:30 in summer (outside).
    assert night.contains(datetime(2025, 1, 15, 4, 30, tzinfo=UTC))
    assert not night.contains(datetime(2025, 7, 15, 4, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    "spec", [("06:00", "22:00", "Mars/Olympus"), ("6am", "22:00", "UTC"), ("06:00", "06:00", "UTC")]
)
def test_bad_working_hours_are_refused(spec: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        WorkingHours.parse(*spec)
