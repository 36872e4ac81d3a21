"""Stored test records read back for the figures rollups keep no values for: a record's measurements and
whether it failed a step (from the digest written when it was stored, ``analytics.record_digest``,
or parsing its JSON where it has none), and the capability of one order's own units (the order page)."""

from __future__ import annotations

import json
from typing import Any

from fabguard.analytics import record_digest, samples
from fabguard.domain.testrecord import stored_rows
from fabguard.service.core.instance import Instance
from fabguard.store import station_windows
from fabguard.store.station_windows import StoredRecord

SAMPLE = 500  # the newest units an order's capability is drawn from


def _parse(record_json: str) -> samples.Parsed | None:
    try:
        return stored_rows(json.loads(record_json))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def parsed(record: StoredRecord, step: tuple[str, str] | None = None) -> samples.Parsed | None:
    """A record read with its digest's ``measured``: its measurements (those of ``step`` at least; its
    phases only where they were parsed from its JSON); None if unreadable. It was checked when stored."""
    if record.record_json is None:
        return record_digest.measured_of(record.digest, step) if record.digest is not None else None
    return _parse(record.record_json)


def failed_step(record: StoredRecord, phase: str, measurement: str | None) -> bool:
    """``samples.failed_step`` of a failed record read with its digest's ``failed_steps``."""
    if record.record_json is None:
        return record.digest is not None and record_digest.failed_in(
            record_digest.steps_of(record.digest), phase, measurement
        )
    found = _parse(record.record_json)
    return found is not None and samples.failed_step(found, phase, measurement)


def order_capability(inst: Instance, order_id: str, site_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cp/Cpk and Pp/Ppk per measurement over the order's own units (each unit's latest record at the
    order's site; its newest ``SAMPLE`` units), so another order's units at the same site never mix in;
    and what they were drawn from (``units_read``, ``limit``, ``sampled``: the order has more units)."""
    with inst.db.read() as s:
        units, records = station_windows.order_unit_records(s, order_id, site_id, limit=SAMPLE)
    found = [p for p in map(parsed, records) if p is not None]
    sample = {"units_read": units, "records_read": len(records), "limit": SAMPLE, "sampled": units >= SAMPLE}
    return [c.to_dict() for c in samples.capabilities(found)], sample
