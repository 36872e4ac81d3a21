"""Sending a file spool's entries: each is stored (and leaves the spool), rejected (moved aside, never sent
again) or kept (the server was out of reach or busy, or refused the fixture itself: sent again later
with the same key). A round stops at the first entry kept, so entries reach the server in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from fabguard_station.client import FabGuardClientError, FixtureClient
from fabguard_station.file_spool import Entry, FileSpool, content_type

# Statuses that say "not now" rather than "never": the entry is kept, like after a network error.
_RETRY_STATUSES = frozenset({408, 429})
# Statuses that refuse the fixture itself (unknown, revoked, wrong site): the file is not at fault.
_FIXTURE_REFUSED = frozenset({401, 403})

Status = Literal["stored", "rejected", "spooled"]


@dataclass
class Delivered:
    """What became of one entry: ``stored`` (with the server's records), ``rejected`` or ``spooled``,
    with the server's code and message when it gave one."""

    entry: Entry
    status: Status
    records: list[dict[str, Any]] = field(default_factory=list)
    code: str | None = None
    message: str | None = None
    fixture_refused: bool = False  # kept because the server refuses this fixture: a person must act

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.entry.name, "spooled_as": self.entry.path.name, "status": self.status}
        if self.records:
            out["records"] = self.records
        if self.code is not None:
            out["error"] = {"code": self.code, "message": self.message or ""}
        return out


def deliver(client: FixtureClient, spool: FileSpool, entries: list[Entry]) -> list[Delivered]:
    """Send ``entries`` oldest first, each with its own key; once one must wait, the rest wait too."""
    out: list[Delivered] = []
    held: Delivered | None = None
    for entry in entries:
        if held is not None:
            out.append(Delivered(entry, "spooled", code=held.code, message=held.message))
            continue
        result = _send(client, spool, entry)
        if result.status == "spooled":
            held = result
        out.append(result)
    return out


def _send(client: FixtureClient, spool: FileSpool, entry: Entry) -> Delivered:
    data = entry.read()
    try:
        records = client.upload_test_file(
            data, content_type(data, entry.format), format=entry.format, tz=entry.tz, idempotency_key=entry.key
        )
    except FabGuardClientError as exc:
        if exc.status >= 500 or exc.status in _RETRY_STATUSES or exc.code == "idempotency_key_in_progress":
            return Delivered(entry, "spooled", code=exc.code, message=exc.message)
        if exc.status in _FIXTURE_REFUSED:
            return Delivered(entry, "spooled", code=exc.code, message=exc.message, fixture_refused=True)
        spool.reject(entry, exc.code, exc.message, exc.status)
        return Delivered(entry, "rejected", code=exc.code, message=exc.message)
    except httpx.HTTPError as exc:
        return Delivered(entry, "spooled", code="server_unavailable", message=f"{type(exc).__name__}: {exc}")
    except (ValueError, KeyError, TypeError) as exc:  # an answer that is not the API's: a proxy, say
        return Delivered(entry, "spooled", code="server_unavailable", message=f"unexpected answer: {exc}")
    spool.done(entry)
    return Delivered(entry, "stored", records=records)


__all__ = ["Delivered", "deliver"]
