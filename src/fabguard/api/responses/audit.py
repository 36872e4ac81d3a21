"""Answers of the audit trail: events and a unit's test records."""

from __future__ import annotations

from pydantic import Field, JsonValue

from fabguard.api.responses import Out


class LedgerEvent(Out):
    """An event of the ledger (``seq`` - 1 is its entry's index in the Merkle tree)."""

    seq: int
    at: str
    kind: str = Field(description="unit.provisioned, unit.refused, order.created, ...")
    actor: str | None
    order_id: str | None
    fixture_id: str | None
    serial: str | None
    code: str | None = Field(description="A refusal's error code")
    detail: dict[str, JsonValue] = Field(description="What the event's kind records")


class UnitTestRecord(Out):
    id: int
    serial: str
    fixture_id: str
    station_id: str = Field(description="The fixture's id (the station that uploaded it)")
    site_id: str
    declared_station_id: str = Field(description="The station id the record itself names")
    outcome: str
    start_time_millis: int
    end_time_millis: int
    measurements: int = Field(description="How many measurements it holds")
    received_at: str


class UnitIdentityShown(Out):
    """A unit's identities as listings show them: never the passcode, salt or verifier."""

    serial_index: int | None
    mac_addresses: list[str]
    matter: dict[str, int] | None


class UnitListed(Out):
    serial: str
    product_id: str
    order_id: str
    issuing_ca: str
    cert_serial: str = Field(description="hex")
    issued_at: str
    revoked_at: str | None
    revocation_reason: str | None
    identity: UnitIdentityShown | None = Field(description="Its identities, where its product has identity pools")
