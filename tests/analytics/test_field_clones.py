"""The field_clone detector: field checks carrying a clone signal, one alert per serial and signal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fabguard.analytics.alerts import Severity
from fabguard.analytics.detectors import FieldClones, default_event_detectors
from fabguard.analytics.facts import EventFact

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def test_the_projector_runs_it() -> None:
    assert any(isinstance(d, FieldClones) for d in default_event_detectors())


def test_the_field_clone_detector_raises_one_alert_per_serial_and_signal() -> None:
    def checked(seq: int, clone: str | None, serial: str = "SN-1") -> EventFact:
        detail = {"clone": clone, "place": "store-b", "other_place": "store-a" if clone == "two_places" else None}
        return EventFact(seq, T0 + timedelta(seconds=seq), "field.checked", "po-1", None, serial, None, detail)

    events = [checked(1, None), checked(2, "two_places"), checked(3, "two_places"), checked(4, "not_issued", "SN-9")]
    events.append(EventFact(5, T0, "unit.refused", "po-1", None, "SN-1", "key_reused", {"clone": "two_places"}))
    alerts = sorted(FieldClones().detect(events), key=lambda a: a.count)
    assert [(a.kind, a.count) for a in alerts] == [("field_clone", 1), ("field_clone", 2)]
    assert "store-a and store-b" in alerts[1].message and alerts[1].severity is Severity.CRITICAL
    assert "never issued" in alerts[0].message
