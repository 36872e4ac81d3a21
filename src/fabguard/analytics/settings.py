"""Analytics settings: the windows the figures cover, the rates a line is held to, the detectors' constants.

A pure value with its checks, built from a plain mapping (what ``<home>/analytics.json`` holds); reading
the file is the service's (``fabguard.service.analytics.dashboard_queries.load_settings``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from fabguard.analytics import drift
from fabguard.analytics.hours import parse_working_hours

# The names a settings mapping may hold.
SETTING_NAMES = frozenset(
    {
        "window_hours",
        "bucket_minutes",
        "rated_units_per_hour",
        "working_hours",
        "drift_subgroup",
        "drift_baseline",
        "drift_limit",
        "drift_run",
        "drift_trend",
    }
)


@dataclass(frozen=True)
class AnalyticsSettings:
    """How far back analytics looks, and the rates it holds a line to."""

    window: timedelta = timedelta(hours=8)
    bucket: timedelta = timedelta(minutes=10)
    burn_window: timedelta = timedelta(hours=1)
    rated_units_per_hour: float | None = None
    # Per site: local working hours and their IANA zone, e.g. {"cm-a": ("06:00", "22:00", "Asia/Shanghai")};
    # line activity outside them raises ``off_hours_activity``. Sites not named here are not judged.
    working_hours: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    # Measurement drift: Nelson rules on means of this many consecutive passing units, judged against a
    # chart set by the first ``drift_baseline`` such means of each site and measurement; rule 1 at
    # ``drift_limit`` sigma, rule 2 a run of ``drift_run``, rule 3 a trend of ``drift_trend`` (defaults
    # for high-volume lines; 3, 9 and 6 are the textbook constants, with about 1 % false signals).
    drift_subgroup: int = 5
    drift_baseline: int = 20
    drift_limit: float = drift.LIMIT
    drift_run: int = drift.RUN
    drift_trend: int = drift.TREND

    def __post_init__(self) -> None:
        parse_working_hours(self.working_hours)  # a bad time or zone fails here, not at the first alert
        if self.drift_subgroup < 1 or self.drift_baseline < 2:
            raise ValueError("drift_subgroup must be at least 1 and drift_baseline at least 2")
        if not (math.isfinite(self.drift_limit) and self.drift_limit > 0) or self.drift_run < 2 or self.drift_trend < 3:
            raise ValueError("drift_limit must be more than 0, drift_run at least 2 and drift_trend at least 3")
        for name, span in (("window", self.window), ("bucket", self.bucket), ("burn_window", self.burn_window)):
            if span < timedelta(minutes=1) or span % timedelta(minutes=1):
                raise ValueError(f"{name} must be a whole number of minutes (rollups are per minute)")


DEFAULT = AnalyticsSettings()


def settings_from_dict(data: object) -> AnalyticsSettings:
    """Settings from a decoded ``analytics.json``: an object with any of ``window_hours``,
    ``bucket_minutes``, ``rated_units_per_hour``, ``working_hours`` (``{"cm-a": ["06:00", "22:00",
    "Asia/Shanghai"]}``), ``drift_subgroup``, ``drift_baseline``, ``drift_limit``, ``drift_run`` and
    ``drift_trend``; the rest take their defaults.

    A bad value raises ``ValueError``, ``TypeError``, ``IndexError`` or ``KeyError`` naming the setting
    where it can (the caller says which file it came from)."""
    if not isinstance(data, dict):
        raise ValueError("the file must hold a JSON object")
    unknown = set(data) - SETTING_NAMES
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}")
    hours = data.get("working_hours", {})
    if not isinstance(hours, dict):
        raise ValueError("working_hours must map a site to [start, end, zone]")
    return AnalyticsSettings(
        window=timedelta(hours=float(data.get("window_hours", DEFAULT.window.total_seconds() / 3600))),
        bucket=timedelta(minutes=float(data.get("bucket_minutes", DEFAULT.bucket.total_seconds() / 60))),
        rated_units_per_hour=data.get("rated_units_per_hour"),
        working_hours={str(site): (str(h[0]), str(h[1]), str(h[2])) for site, h in hours.items()},
        drift_subgroup=int(data.get("drift_subgroup", DEFAULT.drift_subgroup)),
        drift_baseline=int(data.get("drift_baseline", DEFAULT.drift_baseline)),
        drift_limit=float(data.get("drift_limit", DEFAULT.drift_limit)),
        drift_run=int(data.get("drift_run", DEFAULT.drift_run)),
        drift_trend=int(data.get("drift_trend", DEFAULT.drift_trend)),
    )
