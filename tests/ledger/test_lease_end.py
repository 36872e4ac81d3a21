"""The rule for closing a quota lease (ADR 0022), alone: when the agent's log is final, and what goes back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fabguard.domain.errors import Conflict
from fabguard.ledger.lease_end import LeaseEnd, LeaseFacts, lease_end

END = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BEFORE, AFTER = END - timedelta(hours=1), END + timedelta(hours=1)
FACTS = LeaseFacts("lease-1", "active", 200, 150, END, BEFORE, finished=True)


def _refused(facts: LeaseFacts, now: datetime) -> str:
    with pytest.raises(Conflict) as exc:
        lease_end(facts, now)
    return exc.value.code


def test_a_finished_log_synced_returns_the_units_not_made_before_the_lease_ends() -> None:
    assert lease_end(FACTS, BEFORE) == LeaseEnd(leased=200, made=150, returned=50)
    assert lease_end(replace(FACTS, units_synced=200), BEFORE).returned == 0
    assert lease_end(replace(FACTS, units_synced=0, synced_at=None), BEFORE).returned == 200
    # A discrepancy resolved: the synced log's count stands (clones took quota at the agent too).
    assert lease_end(replace(FACTS, state="resolved"), BEFORE).to_dict() == {"leased": 200, "made": 150, "returned": 50}


def test_without_the_finish_entry_only_a_sync_after_the_lease_ended_is_final() -> None:
    unfinished = replace(FACTS, finished=False)
    assert _refused(unfinished, BEFORE) == "lease_not_final"  # the agent may still provision
    assert _refused(unfinished, AFTER) == "lease_not_final"  # ended, but its last sync came before the end
    assert _refused(replace(unfinished, synced_at=None), AFTER) == "lease_not_final"  # never synced
    assert _refused(replace(unfinished, synced_at=END), AFTER) == "lease_not_final"  # at the end is not after it
    assert lease_end(replace(unfinished, synced_at=AFTER), AFTER).returned == 50
    # The server's clock decides the end: a sync after it, looked at before it (a clock set back), is not final.
    assert _refused(replace(unfinished, synced_at=AFTER), BEFORE) == "lease_not_final"


def test_a_closed_lease_or_one_with_a_discrepancy_is_not_closed() -> None:
    assert _refused(replace(FACTS, state="closed"), AFTER) == "lease_closed"
    assert _refused(replace(FACTS, state="discrepancy"), AFTER) == "lease_discrepancy"
    assert _refused(replace(FACTS, units_synced=201), AFTER) == "lease_discrepancy"
