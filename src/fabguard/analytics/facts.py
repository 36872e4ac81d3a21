"""The values analytics works on: events and test records as plain, immutable facts (no database rows)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class EventFact:
    """One ledger event, as analytics needs it."""

    seq: int
    at: datetime
    kind: str
    order_id: str | None = None
    fixture_id: str | None = None
    serial: str | None = None
    code: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def site_id(self) -> str | None:
        site = self.detail.get("site_id")
        return site if isinstance(site, str) else None


@dataclass(frozen=True, slots=True)
class MeasuredValue:
    phase: str
    name: str
    value: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True, slots=True)
class TestFact:
    """One stored test record: who tested which serial, the outcome and the measured values."""

    __test__ = False

    record_id: int
    serial: str
    fixture_id: str
    outcome: str
    at: datetime
    measurements: tuple[MeasuredValue, ...] = ()
    seq: int | None = None
    site_id: str | None = None
