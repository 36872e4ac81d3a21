"""Production analytics and anomaly detection: pure functions over event and test-record values."""

from fabguard.analytics.alerts import (
    Acknowledgement,
    Alert,
    Severity,
    alert_id,
    merge_alerts,
    merge_all,
    ordered,
    with_acknowledgements,
)
from fabguard.analytics.detectors import (
    CopiedTestRecords,
    EventDetector,
    ThroughputSpike,
    UntrustedFixture,
    default_event_detectors,
    detect_all,
    duplicate_serial,
    key_reuse,
    quota_overrun,
    untested_units,
)
from fabguard.analytics.drift import MeasurementDrift, Signal, nelson_signals
from fabguard.analytics.facts import EventFact, MeasuredValue, TestFact
from fabguard.analytics.hours import OffHoursActivity, WorkingHours, parse_working_hours
from fabguard.analytics.production import (
    Bucket,
    BurnDown,
    YieldStats,
    buckets,
    quota_burndown,
    refusals_by_reason,
    throughput_per_hour,
    unit_yield,
)
from fabguard.analytics.spc import Capability, capability, measurement_capability

__all__ = [
    "Acknowledgement",
    "Alert",
    "Bucket",
    "BurnDown",
    "Capability",
    "CopiedTestRecords",
    "EventDetector",
    "EventFact",
    "MeasuredValue",
    "MeasurementDrift",
    "OffHoursActivity",
    "Severity",
    "Signal",
    "TestFact",
    "ThroughputSpike",
    "UntrustedFixture",
    "WorkingHours",
    "YieldStats",
    "alert_id",
    "buckets",
    "capability",
    "default_event_detectors",
    "detect_all",
    "duplicate_serial",
    "key_reuse",
    "measurement_capability",
    "merge_alerts",
    "merge_all",
    "nelson_signals",
    "ordered",
    "parse_working_hours",
    "quota_burndown",
    "quota_overrun",
    "refusals_by_reason",
    "throughput_per_hour",
    "unit_yield",
    "untested_units",
    "with_acknowledgements",
]
