"""Stored test records read back for the figures rollups keep no values for: parsing one, and the
capability of one order's own units (what the order page shows)."""

from __future__ import annotations

import json
from typing import Any

from fabguard.analytics import samples
from fabguard.domain.testrecord import stored_rows
from fabguard.service.core.instance import Instance
from fabguard.store import station_windows
from fabguard.store.station_windows import StoredRecord

SAMPLE = 500  # the newest units an order's capability is drawn from


def parsed(record: StoredRecord) -> samples.Parsed | None:
    """A stored record's phases and measurements (it was checked when stored); None if unreadable."""
    try:
        return stored_rows(json.loads(record.record_json))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def order_capability(inst: Instance, order_id: str, site_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cp/Cpk and Pp/Ppk per measurement over the order's own units (each unit's latest record at the
    order's site; its newest ``SAMPLE`` units), so another order's units at the same site never mix in;
    and what they were drawn from (``units_read``, ``limit``, ``sampled``: the order has more units)."""
    with inst.db.read() as s:
        units, records = station_windows.order_unit_records(s, order_id, site_id, limit=SAMPLE)
    found = [p for p in map(parsed, records) if p is not None]
    sample = {"units_read": units, "records_read": len(records), "limit": SAMPLE, "sampled": units >= SAMPLE}
    return [c.to_dict() for c in samples.capabilities(found)], sample
