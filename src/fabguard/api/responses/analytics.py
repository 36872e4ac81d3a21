"""Answers of the dashboard's alerts."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out


class Alert(Out):
    id: str
    kind: str = Field(description="The detector that raised it")
    severity: str = Field(description="info, warning, high or critical")
    message: str
    order_id: str | None
    site_id: str | None
    fixture_id: str | None
    count: int = Field(description="How many times it was seen")
    evidence: list[int] = Field(description="The ledger events (seq) behind it")
    first_at: str
    last_at: str
    acknowledged: bool
    acknowledged_by: str | None
