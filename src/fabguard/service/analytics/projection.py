"""The analytics projector: folds the event log, in sequence order, into rollups and stored alerts.

Dashboard queries over a million test records cannot scan them (ADR 0005); they read small tables the
projector keeps: counts per minute (``stats_minutes``), units by the minute of their first test
(``yield_minutes``, from ``unit_tests``), failed measurements (``failure_minutes``), the same three per
hour for long windows (``stats_hours``, ``yield_hours``, ``failure_hours``: written from the same
batch, so each is always its minute table summed per hour), measurement sums per hour
(``measurement_hours``), fixtures' last activity, and the alerts the detectors raised, merged.

The projector is a consumer of the log with a cursor, the ``analytics_state`` row ``cursor``. Each
batch is read and folded (``fabguard.analytics.fold``, pure) outside any write lock, then written
(``fabguard.store.rollups``, ``fabguard.store.alert_rows``) in one short transaction that first checks
the cursor has not moved and moves it: whatever is derived is exactly the fold of events
``1..cursor``, on SQLite and across PostgreSQL processes alike (a second process that raced loses
the check, drops its work and starts again from the new cursor). A crash loses only uncommitted work.

Detector state that must outlive a batch (each order's recent throughput, each drift chart, the last
value of each measurement for moving ranges) lives in ``analytics_state`` too, and in process memory
while this process is the one moving the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

from fabguard.analytics.alerts import Alert, fold_batch_alerts
from fabguard.analytics.fold import Detectors, check_copies, decode_details, fold_events, wanted
from fabguard.analytics.settings import AnalyticsSettings
from fabguard.service.core.instance import Instance
from fabguard.store import alert_rows, rollups

# Events per batch: one short write transaction each (a few thousand rows, tens of milliseconds).
BATCH = 5000


def forget_memory(inst: Instance) -> None:
    """Drop this process's detector state, as if another process had moved the cursor (it is reloaded)."""
    inst.projector.memory = None


@dataclass(frozen=True)
class Advanced:
    """What one ``advance`` did."""

    cursor: int
    events: int
    alerts: tuple[Alert, ...]


def reset(inst: Instance) -> None:
    """Empty the projection and put the cursor back to 0, in one transaction: the next rounds fold the
    whole log again under the settings of the time (``fabguard stats rebuild``).

    The cursor row is written first, so a projector of another process that folded meanwhile either
    committed before (and its work is deleted here) or finds the cursor moved and drops its batch.
    """
    with inst.projector.lock:
        with inst.db.transaction() as s:
            rollups.clear(s)
        inst.projector.memory = None


def advance(
    inst: Instance, settings: AnalyticsSettings, *, max_events: int | None = None, batch: int = BATCH
) -> Advanced:
    """Fold events after the cursor (all of them, or about ``max_events``) into the analytics tables.

    Safe to call from any number of threads and processes at once; returns the cursor reached and the
    alerts changed on the way (for notification).
    """
    db = inst.db
    done = 0
    changed: dict[str, Alert] = {}
    cursor = 0
    state = inst.projector
    with state.lock:  # one projector per instance at a time; other processes are handled by the cursor check
        while max_events is None or done < max_events:
            with db.read() as s:
                rollups.plan_for_now(s)
                cursor = rollups.read_cursor(s)
                rows = rollups.events_after(s, cursor, batch)
                if not rows:
                    break
                memory = state.memory
                if memory is None or memory.cursor != cursor:
                    memory = state.memory = rollups.load_memory(s, cursor)
                memory.cursor = -1  # in flux until the batch commits
                sites = rollups.fixture_sites(s)
                detectors = Detectors.from_settings(settings, sites)
                details = decode_details(rows)
                record_ids, provisioned = wanted(rows, details)
                records = rollups.records(s, record_ids)
                units = rollups.units(s, {r[0] for r in records.values()} | provisioned)
                folded = fold_events(memory, detectors, rows, details, records, units, sites)
                check_copies(folded, detectors.copies, rollups.vectors_seen(s, folded.digests))
            with db.transaction() as s:
                if not rollups.move_cursor(s, cursor, folded.last_seq):
                    continue  # another process moved it: start again from there
                fold = folded.fold
                rollups.write_rollups(s, fold)
                alerts = fold_batch_alerts(alert_rows.stored(s, fold.alert_ids), fold.hits, fold.acks)
                for alert in alert_rows.write_alerts(s, alerts):
                    changed[alert.id] = alert
                rollups.write_state(s, fold, memory)
            memory.cursor = folded.last_seq
            done += len(rows)
            cursor = folded.last_seq
    return Advanced(cursor, done, tuple(changed.values()))
