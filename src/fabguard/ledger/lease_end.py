"""The end of a quota lease: when its unused units may go back to the order (ADR 0022). Pure: values in,
a verdict out.

A lease's units left the order's quota when it was issued. The units its agent did not make go back only
once the central server holds the agent's final log, so that nothing the agent can still sign is counted
twice: either the synced log holds the agent's own signed ``agent.lease_finished`` entry (``fabguard agent
finish``: the agent's order is closed, and no unit may follow that entry), or the lease has ended and the
last accepted sync came after its end. After the close, every later sync of the lease is refused
(``lease_closed``): a unit of it appearing then is overproduction, never a unit of the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fabguard.domain.errors import Conflict

FINISHED = "agent.lease_finished"  # the agent's last act on its log (site_agent.finish_agent)
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LeaseFacts:
    """What the central server knows of a lease when someone asks to close it."""

    lease_id: str
    state: str
    units: int
    units_synced: int  # the units the synced agent log made (clones counted: they took quota at the agent)
    not_after: datetime
    synced_at: datetime | None
    finished: bool  # the synced log holds the agent's FINISHED entry


@dataclass(frozen=True, slots=True)
class LeaseEnd:
    """The close's figures: the units leased, made by the agent (as its synced log says), and returned."""

    leased: int
    made: int
    returned: int

    def to_dict(self) -> dict[str, int]:
        return {"leased": self.leased, "made": self.made, "returned": self.returned}


def lease_end(facts: LeaseFacts, now: datetime) -> LeaseEnd:
    """The figures of closing the lease now, or the refusal: already closed (``lease_closed``), a discrepancy
    standing (``lease_discrepancy``), or the agent's final log not synced yet (``lease_not_final``)."""
    if facts.state == CLOSED:
        raise Conflict(f"lease {facts.lease_id} is already closed", code="lease_closed")
    if facts.state == "discrepancy":
        raise Conflict(
            f"lease {facts.lease_id} has a discrepancy that stands: resolve it before closing", code="lease_discrepancy"
        )
    if not facts.finished:
        ended = now >= facts.not_after
        synced_after = facts.synced_at is not None and facts.synced_at > facts.not_after
        if not (ended and synced_after):
            raise Conflict(
                f"lease {facts.lease_id}'s final log is not synced: run 'fabguard agent finish' then "
                f"'fabguard agent sync' at the site, or sync once after the lease ends "
                f"({facts.not_after.isoformat()})",
                code="lease_not_final",
            )
    if not 0 <= facts.units_synced <= facts.units:  # verify_sync keeps it so; a row that says otherwise is wrong
        raise Conflict(
            f"lease {facts.lease_id} says {facts.units_synced} units made of {facts.units}", code="lease_discrepancy"
        )
    return LeaseEnd(facts.units, facts.units_synced, facts.units - facts.units_synced)
