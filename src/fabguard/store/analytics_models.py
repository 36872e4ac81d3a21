"""Analytics tables: derived data, kept by the projector (``fabguard.service.analytics.projection``) from the events.

Nothing here is a source of truth: every row follows from the event log and the test records, and the
projector's cursor (``analytics_state`` key ``cursor``) says up to which event sequence. The rollups are
counts per minute (epoch minutes, UTC) and per dimension, and the same counts per hour (epoch hours,
``minute // 60``) for long windows; an absent dimension is stored as ``""`` so it can be part of a
primary key. They share the declarative base of ``fabguard.store.base``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime

_Id = String(63)


class AnalyticsState(Base):
    """The projector's cursor and each detector's saved state (JSON), by key."""

    __tablename__ = "analytics_state"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class StatsMinute(Base):
    """Events per minute: provisioned units, refusals (kind and code), test outcomes (``test.recorded``, code = outcome)."""

    __tablename__ = "stats_minutes"
    minute: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class StatsHour(Base):
    """The same counts as ``stats_minutes`` per hour (epoch hours, UTC: ``minute // 60``), for long windows."""

    __tablename__ = "stats_hours"
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class StatsTotal(Base):
    """The same counts as ``stats_minutes`` over all time (what Prometheus counters report)."""

    __tablename__ = "stats_totals"
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class UnitTests(Base):
    """Per serial: where and when it was first tested, how often, its first and latest outcome."""

    __tablename__ = "unit_tests"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(_Id)
    order_id: Mapped[str] = mapped_column(_Id)
    fixture_id: Mapped[str] = mapped_column(_Id)
    first_minute: Mapped[int] = mapped_column(Integer)
    tests: Mapped[int] = mapped_column(Integer)
    first_outcome: Mapped[str] = mapped_column(String(16))
    last_outcome: Mapped[str] = mapped_column(String(16))


class YieldMinute(Base):
    """Units by the minute of their first test: how many, their tests, first-pass, final-pass, retested."""

    __tablename__ = "yield_minutes"
    minute: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    units: Mapped[int] = mapped_column(BigInteger)
    tests: Mapped[int] = mapped_column(BigInteger)
    first_pass: Mapped[int] = mapped_column(BigInteger)
    final_pass: Mapped[int] = mapped_column(BigInteger)
    retested: Mapped[int] = mapped_column(BigInteger)


class YieldHour(Base):
    """The same counts as ``yield_minutes`` per hour of first test (``minute // 60``), for long windows."""

    __tablename__ = "yield_hours"
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    units: Mapped[int] = mapped_column(BigInteger)
    tests: Mapped[int] = mapped_column(BigInteger)
    first_pass: Mapped[int] = mapped_column(BigInteger)
    final_pass: Mapped[int] = mapped_column(BigInteger)
    retested: Mapped[int] = mapped_column(BigInteger)


class FailureMinute(Base):
    """Failed measurements (or failed phases without one) per minute: the failure Pareto."""

    __tablename__ = "failure_minutes"
    minute: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    phase: Mapped[str] = mapped_column(String(128), primary_key=True)
    measurement: Mapped[str] = mapped_column(String(128), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class FailureHour(Base):
    """The same counts as ``failure_minutes`` per hour (``minute // 60``), for long windows."""

    __tablename__ = "failure_hours"
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    phase: Mapped[str] = mapped_column(String(128), primary_key=True)
    measurement: Mapped[str] = mapped_column(String(128), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class MeasurementHour(Base):
    """Per hour and measurement: count, sums for mean and sigma, extremes, moving ranges (within sigma), fails.

    ``mr_total``/``mr_n`` are the moving ranges between consecutive values of the same measurement at
    the same fixture, in production order: sigma within = mean moving range / d2 (Cpk), while the sums
    give the overall sigma (Ppk). The sums are of ``value - ref``, so a large mean costs no precision.
    Limits are the latest seen.
    """

    __tablename__ = "measurement_hours"
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    site_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    phase: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(Float)  # of value - ref
    total_sq: Mapped[float] = mapped_column(Float)  # of (value - ref)^2
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    mr_total: Mapped[float] = mapped_column(Float)
    mr_n: Mapped[int] = mapped_column(BigInteger)
    fails: Mapped[int] = mapped_column(BigInteger)
    lower: Mapped[float | None] = mapped_column(Float, nullable=True)
    upper: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The value the sums are taken about (the row's first value): exact sums of squares at any magnitude.
    ref: Mapped[float] = mapped_column(Float)


class FixtureActivity(Base):
    """When each fixture last appeared in an event."""

    __tablename__ = "fixture_activity"
    fixture_id: Mapped[str] = mapped_column(_Id, primary_key=True)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seq: Mapped[int] = mapped_column(BigInteger)


class TestVector(Base):
    """The first record seen with each measurement vector (a digest), to recognise copied test records."""

    __tablename__ = "test_vectors"
    __test__ = False
    digest: Mapped[str] = mapped_column(String(32), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[int] = mapped_column(BigInteger)


class AlertRow(Base):
    """An alert as the detectors have merged it so far, and its acknowledgement."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_last_seq", "last_seq"),)
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(_Id, nullable=True)
    site_id: Mapped[str | None] = mapped_column(_Id, nullable=True)
    fixture_id: Mapped[str | None] = mapped_column(_Id, nullable=True)
    count: Mapped[int] = mapped_column(BigInteger)
    evidence: Mapped[str] = mapped_column(Text)  # JSON list of the newest event seqs
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seq: Mapped[int] = mapped_column(BigInteger)
    acked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acked_up_to: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class WorkerLease(Base):
    """Who may run a singleton job (e.g. webhook delivery) across server processes, and until when."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
