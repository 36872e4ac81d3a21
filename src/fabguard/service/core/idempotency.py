"""Exactly-once fixture requests: an ``Idempotency-Key`` keeps a request's answer with its work.

The answer is stored in the transaction that does the work, so a resend after a lost answer finds
either nothing (the work rolled back: it is done now) or the answer (the work committed: it is
replayed, and nothing is stored twice). For test records, taking the key is the transaction's first
write: on PostgreSQL a concurrent request with the same key waits for the first one's commit and then
replays its answer; on SQLite writers queue anyway. Provisioning (``service/provisioning/group.py``) reads
its units' keys first and inserts them, answered, with the group's writes; a rival that answered one
meanwhile makes that insert come up short, and the unit is decided again (it then replays the rival's
answer). A batch of provisioning requests takes its own row first, in a short transaction of its own (a
rival meanwhile gets ``idempotency_key_in_progress``), and each unit's answer is kept as a part of the
key with that unit's work. The batch's row names the server process working on it (its liveness lease,
``runtime.liveness``, renewed every second): once that lease has lapsed (the process died) a resend takes
the batch over at once, its finished units replayed and the rest done; a row whose process kept no
lease (the CLI, or a row from before) is taken over after ``STALE_AFTER``.
Keys are forgotten ``Limits.idempotency_key_hours`` after they were taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.domain.idempotency import IdempotencyKey, request_fingerprint
from fabguard.service.core.instance import Instance
from fabguard.store import idempotency as rows

# A batch still unanswered this long after it was taken belongs to a process that died, whether or not
# that process kept a liveness lease (with one, its death is seen within seconds: ``runtime.liveness``).
STALE_AFTER = timedelta(minutes=5)
_IN_PROGRESS = "the request with this Idempotency-Key is still being worked on; send it again later"


@dataclass(frozen=True, slots=True)
class Keyed:
    """One fixture's key for one request (``part`` 0) or for one unit of its batch (``part`` ``i + 1``)."""

    fixture_id: str
    key: str
    fingerprint: str
    part: int = 0

    @classmethod
    def of(cls, fixture_id: str, key: IdempotencyKey, operation: str, body: object) -> Keyed:
        return cls(fixture_id, key.value, request_fingerprint(operation, body))

    def unit(self, index: int, body: object) -> Keyed:
        return replace(self, part=index + 1, fingerprint=request_fingerprint(f"unit {index}", body))


@dataclass(frozen=True, slots=True)
class Answer:
    """What a keyed request was answered: HTTP status and JSON body; ``replayed`` when it was stored before."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def expired_before(inst: Instance, now: datetime) -> datetime:
    """Keys taken before this are forgotten (``Limits.idempotency_key_hours``)."""
    return now - timedelta(hours=inst.limits.idempotency_key_hours)


def stored_answer(row: rows.IdempotencyKeyRow | None, keyed: Keyed) -> Answer:
    """The answer kept under ``keyed``'s row; raises when it is another request's, or still at work."""
    if row is None:  # taken and forgotten between our insert and our read: only a bug or a clock jump
        raise Conflict(_IN_PROGRESS, code="idempotency_key_in_progress")
    if row.fingerprint != keyed.fingerprint:
        raise InvalidRequest(
            "this Idempotency-Key was used for a different request; use a new key for a new request",
            code="idempotency_key_reused",
        )
    if row.status is None or row.body is None:
        raise Conflict(_IN_PROGRESS, code="idempotency_key_in_progress")
    return Answer(row.status, json.loads(row.body), replayed=True)


def take(s: Session, inst: Instance, keyed: Keyed, now: datetime, *, holder: str | None = None) -> Answer | None:
    """Take the key in the caller's transaction (None: do the work, then :func:`keep`), or the stored answer.

    Raises ``idempotency_key_reused`` when the key was taken for another body and
    ``idempotency_key_in_progress`` when its batch is still at work."""
    rows.delete_expired(s, expired_before(inst, now), fixture_id=keyed.fixture_id, key=keyed.key)
    if rows.insert_key(s, keyed.fixture_id, keyed.key, keyed.part, keyed.fingerprint, now, holder=holder):
        return None
    return stored_answer(rows.find_key(s, keyed.fixture_id, keyed.key, keyed.part), keyed)


def keep(s: Session, keyed: Keyed, status: int, body: dict[str, Any]) -> Answer:
    """Store the answer under a key this transaction took."""
    rows.set_answer(s, keyed.fixture_id, keyed.key, keyed.part, status, json.dumps(body, separators=(",", ":")))
    return Answer(status, body)


def begin_batch(inst: Instance, keyed: Keyed) -> Answer | None:
    """Take a batch's key in a transaction of its own, so that rivals see it at work: None to go ahead,
    else its stored answer; raises ``idempotency_key_in_progress`` while it is at work (unless its
    process died: it is then taken over) and ``idempotency_key_reused``. The key is held for this
    process's liveness lease (``inst.process_lease``), when it keeps one."""
    now, holder = inst.clock(), inst.process_lease
    with inst.db.transaction() as s:
        try:
            return take(s, inst, keyed, now, holder=holder)
        except Conflict:
            # Leases are kept in wall-clock time, whatever the instance's clock says.
            live_at = datetime.now(UTC)
            stale_before = now - STALE_AFTER
            if not rows.take_over(
                s, keyed.fixture_id, keyed.key, holder=holder, stale_before=stale_before, now=now, live_at=live_at
            ):
                raise
    return None


def finish_batch(inst: Instance, keyed: Keyed, body: dict[str, Any]) -> Answer:
    with inst.db.transaction() as s:
        return keep(s, keyed, 200, body)


def abandon_batch(inst: Instance, keyed: Keyed) -> None:
    """A batch that failed with an error: free its key for a resend (its units' answers stay, and replay)."""
    with inst.db.transaction() as s:
        rows.delete_key(s, keyed.fixture_id, keyed.key, part=0)


def forget_expired(inst: Instance) -> int:
    """Maintenance: forget keys older than the retention period; returns how many rows went."""
    with inst.db.transaction() as s:
        return rows.delete_expired(s, expired_before(inst, inst.clock()))
