"""Answers about quota leases (a site agent provisioning offline) and their sync."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out


class Lease(Out):
    id: str
    order_id: str
    site_id: str
    units: int = Field(description="Units of the order's quota the agent may provision")
    issued_at: str
    not_after: str
    issued_by: str
    agent_ca: str = Field(description="The site agent's CA, which signs the units it provisions")
    state: str
    synced_size: int = Field(description="The size of the agent's log accepted so far")
    synced_at: str | None
    units_synced: int
    discrepancy: str | None = Field(description="What the last sync found wrong, until resolved")


class LeaseSync(Out):
    lease_id: str
    size: int = Field(description="The agent log's size now accepted")
    entries: int = Field(description="New entries in this sync")
    units: int = Field(description="New units accepted (clones excepted)")
    units_synced: int
    clones: list[str] = Field(description="Units found to be clones: the lease is in discrepancy")
    resent: bool | None = Field(default=None, description="Present (true) when this answers a sync sent again")


class LeaseResolved(Out):
    lease_id: str
    state: str
