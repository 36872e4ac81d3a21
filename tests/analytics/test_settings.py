"""Analytics settings as a value: built from what ``analytics.json`` holds, every bad value refused by name."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fabguard.analytics.settings import DEFAULT, AnalyticsSettings, settings_from_dict


def test_an_empty_object_gives_the_defaults() -> None:
    assert settings_from_dict({}) == DEFAULT == AnalyticsSettings()


def test_every_setting_is_read() -> None:
    settings = settings_from_dict(
        {
            "window_hours": 2,
            "bucket_minutes": 5,
            "rated_units_per_hour": 120.0,
            "working_hours": {"cm-a": ["06:00", "22:00", "Asia/Shanghai"]},
            "drift_subgroup": 4,
            "drift_baseline": 10,
            "drift_limit": 3.0,
            "drift_run": 9,
            "drift_trend": 6,
        }
    )
    assert settings == AnalyticsSettings(
        window=timedelta(hours=2),
        bucket=timedelta(minutes=5),
        rated_units_per_hour=120.0,
        working_hours={"cm-a": ("06:00", "22:00", "Asia/Shanghai")},
        drift_subgroup=4,
        drift_baseline=10,
        drift_limit=3.0,
        drift_run=9,
        drift_trend=6,
    )


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([], "JSON object"),
        ({"drift_runs": 9}, "unknown settings"),
        ({"working_hours": ["cm-a"]}, "working_hours"),
        ({"bucket_minutes": 0.5}, "bucket"),
        ({"window_hours": 0.01}, "window"),
        ({"drift_subgroup": 0}, "drift_subgroup"),
        ({"drift_limit": "nan"}, "drift_limit"),
        ({"drift_run": 1}, "drift_run"),
        ({"drift_trend": 2}, "drift_trend"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(data: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        settings_from_dict(data)


def test_a_bad_zone_is_refused_when_read_not_at_the_first_alert() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        settings_from_dict({"working_hours": {"cm-a": ["06:00", "22:00", "Mars/Olympus"]}})
