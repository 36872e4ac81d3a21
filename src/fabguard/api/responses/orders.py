"""Answers about production orders, their units and quota changes."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out


class PendingQuotaChange(Out):
    id: int
    new_quota: int
    requested_by: str
    reason: str


class Order(Out):
    id: str
    product_id: str
    site_id: str
    state: str = Field(description="active, suspended or closed")
    quota: int
    used: int = Field(description="Units provisioned (quota consumed)")
    remaining: int
    valid_from: str
    valid_until: str | None
    created_at: str
    created_by: str
    refused: dict[str, int] = Field(description="Refused requests by error code")
    refused_total: int
    pending_quota_changes: list[PendingQuotaChange] = Field(description="Raises waiting for a second approver")
    issuing_ca: str = Field(description="The CA that signs its units")


class UnitAttestation(Out):
    """What key attestation backed a unit's certificate, as recorded with it and in its event."""

    format: str = Field(description="tpm2-certify or se-chain")
    evidence_sha256: str
    leaf_sha256: str = Field(description="The AK's or the secure element's certificate")
    root_sha256: str = Field(description="The trusted root it chained to")
    root_subject: str
    key_name: str | None = Field(default=None, description="The TPM's name of the certified key (tpm2-certify only)")


class OrderUnit(Out):
    id: int
    serial: str
    fixture_id: str
    cert_serial: str
    issued_at: str
    attestation: UnitAttestation | None = Field(description="What key attestation backed the certificate")


class QuotaChange(Out):
    id: int
    order_id: str
    old_quota: int
    new_quota: int
    state: str = Field(description="pending (a raise), applied or rejected")
    reason: str
    requested_by: str
    decided_by: str | None
