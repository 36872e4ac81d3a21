"""Activity outside a site's working hours: a line that provisions or tests at night when it should not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fabguard.analytics.alerts import Alert, Severity, make_alert, merge_all
from fabguard.analytics.facts import EventFact

# What a line does; an administrator acknowledging an alert at night is not line activity.
ACTIVITY_KINDS = frozenset({"unit.provisioned", "unit.refused", "test.recorded", "test.refused", "request.refused"})


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """Local wall-clock hours ``[start, end)`` in an IANA zone; ``end`` before ``start`` spans midnight."""

    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, start: str, end: str, zone: str) -> WorkingHours:
        """From ``("06:00", "22:00", "Asia/Shanghai")``; raises ValueError on a bad time or zone."""
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}") from exc
        hours = cls(time.fromisoformat(start), time.fromisoformat(end), tz)
        if hours.start == hours.end:
            raise ValueError("working hours must not start and end at the same time")
        return hours

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(self.zone).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone.key}"


def parse_working_hours(spec: Mapping[str, tuple[str, str, str]]) -> dict[str, WorkingHours]:
    """``{"cm-a": ("06:00", "22:00", "Asia/Shanghai")}`` into checked values."""
    return {site: WorkingHours.parse(*hours) for site, hours in spec.items()}


@dataclass(frozen=True)
class OffHoursActivity:
    """One alert per site and local calendar day with line activity outside the site's working hours.

    An event's site comes from its detail, else from its fixture (``fixture_sites``); sites without
    configured hours are not judged. A day per alert: acknowledging one night does not hide the next.
    """

    hours: Mapping[str, WorkingHours]
    fixture_sites: Mapping[str, str] = field(default_factory=dict)
    kind: str = "off_hours_activity"
    kinds: ClassVar[frozenset[str]] = ACTIVITY_KINDS  # the only events ``hit`` looks at

    def hit(self, e: EventFact) -> Alert | None:
        if e.kind not in ACTIVITY_KINDS:
            return None
        site = e.site_id or (self.fixture_sites.get(e.fixture_id) if e.fixture_id else None)
        hours = self.hours.get(site) if site else None
        if site is None or hours is None or hours.contains(e.at):
            return None
        day = hours.local_day(e.at)
        what = "a unit provisioned" if e.kind == "unit.provisioned" else "line activity"
        return make_alert(
            self.kind,
            Severity.HIGH if e.kind == "unit.provisioned" else Severity.WARNING,
            f"line events at {site} on {day.isoformat()} outside working hours {hours.describe()}; "
            f"latest {what} at {e.at.astimezone(hours.zone):%H:%M}",
            [e.seq],
            [e.at],
            subject=[site, day.isoformat()],
            site_id=site,
            fixture_id=e.fixture_id,
        )

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        return merge_all(h for e in events if (h := self.hit(e)) is not None)
