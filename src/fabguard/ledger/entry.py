"""The canonical byte encoding of a ledger entry (one event), documented in docs/ledger.md.

JSON with keys sorted, no insignificant white space, ASCII only (non-ASCII as \\u escapes), integers,
strings, booleans, null and nested objects (no floats); ``at`` as RFC 3339 UTC with microseconds.
The bytes are computed once when the event is appended, stored verbatim, hashed as the leaf and
exported as one line of ``entries.jsonl``: the auditor hashes exactly what the server hashed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

ENTRY_VERSION = 1


def format_time(at: datetime) -> str:
    """``at`` as ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` in UTC writes it, formatted here (an eighth of the cost:
    every event's entry carries one)."""
    u = at.astimezone(UTC)
    if u.year < 1000:  # strftime writes such a year unpadded
        return u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{u.year}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def encode_entry(
    *,
    seq: int,
    at: datetime,
    kind: str,
    actor: str | None,
    order_id: str | None,
    fixture_id: str | None,
    serial: str | None,
    code: str | None,
    detail: dict[str, Any],
) -> bytes:
    return canonical_json(
        {
            "v": ENTRY_VERSION,
            "index": seq - 1,
            "at": format_time(at),
            "kind": kind,
            "actor": actor,
            "order_id": order_id,
            "fixture_id": fixture_id,
            "serial": serial,
            "code": code,
            "detail": detail,
        }
    )


def decode_entry(line: bytes) -> dict[str, Any]:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("a ledger entry is a JSON object")
    return value
