"""Activity outside a site's working hours: a line that provisions or tests at night when it should not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fabguard.analytics.alerts import Alert, Severity, make_alert
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

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        groups: dict[tuple[str, date], list[EventFact]] = {}
        for e in events:
            if e.kind not in ACTIVITY_KINDS:
                continue
            site = e.site_id or (self.fixture_sites.get(e.fixture_id) if e.fixture_id else None)
            hours = self.hours.get(site) if site else None
            if site is None or hours is None or hours.contains(e.at):
                continue
            groups.setdefault((site, hours.local_day(e.at)), []).append(e)
        alerts = []
        for (site, day), group in sorted(groups.items()):
            hours = self.hours[site]
            provisioned = sum(1 for e in group if e.kind == "unit.provisioned")
            first = min(e.at for e in group).astimezone(hours.zone)
            fixtures = {e.fixture_id for e in group}
            alerts.append(
                make_alert(
                    self.kind,
                    Severity.HIGH if provisioned else Severity.WARNING,
                    f"{len(group)} line events ({provisioned} units provisioned) at {site} on {day.isoformat()} "
                    f"outside working hours {hours.describe()}, first at {first:%H:%M}",
                    [e.seq for e in group],
                    [e.at for e in group],
                    subject=[site, day.isoformat()],
                    site_id=site,
                    fixture_id=fixtures.pop() if len(fixtures) == 1 else None,
                )
            )
        return alerts
