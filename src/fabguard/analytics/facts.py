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


_new = object.__new__
_EVENT_SLOTS = tuple(
    EventFact.__dict__[f].__set__ for f in ("seq", "at", "kind", "order_id", "fixture_id", "serial", "code", "detail")
)


def event_fact(
    seq: int,
    at: datetime,
    kind: str,
    order_id: str | None,
    fixture_id: str | None,
    serial: str | None,
    code: str | None,
    detail: Mapping[str, Any],
) -> EventFact:
    """``EventFact(seq, at, kind, order_id, fixture_id, serial, code, detail)`` setting the slots directly,
    as ``measured_value`` does: the projector makes one per event folded."""
    e = _new(EventFact)
    s_seq, s_at, s_kind, s_order, s_fixture, s_serial, s_code, s_detail = _EVENT_SLOTS
    s_seq(e, seq)
    s_at(e, at)
    s_kind(e, kind)
    s_order(e, order_id)
    s_fixture(e, fixture_id)
    s_serial(e, serial)
    s_code(e, code)
    s_detail(e, detail)
    return e


@dataclass(frozen=True, slots=True)
class MeasuredValue:
    phase: str
    name: str
    value: float | None
    lower: float | None
    upper: float | None


_set_phase, _set_name, _set_value, _set_lower, _set_upper = (
    MeasuredValue.__dict__[f].__set__
    for f in ("phase", "name", "value", "lower", "upper")  # the slots
)


def measured_value(
    phase: str, name: str, value: float | None, lower: float | None, upper: float | None
) -> MeasuredValue:
    """``MeasuredValue(phase, name, value, lower, upper)`` at half the cost: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``; this sets the slots directly. For the
    projector, which makes one per value folded (a million in a bulk catch-up)."""
    m = _new(MeasuredValue)
    _set_phase(m, phase)
    _set_name(m, name)
    _set_value(m, value)
    _set_lower(m, lower)
    _set_upper(m, upper)
    return m


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
