"""Answers about royalty rates and feature licences."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out


class RoyaltyRate(Out):
    id: int
    product_id: str
    order_id: str | None = Field(description="Set for an order's own rate; null for the product's")
    amount: str = Field(description="A decimal amount per unit")
    currency: str
    effective_from: str
    set_at: str
    set_by: str
    ledger_entry: int


class LicensedDevice(Out):
    serial: str
    certificate_sha256: str
    certificate_serial: str = Field(description="hex")


class LicenceBody(Out):
    v: int
    id: str
    issuer: str
    product_id: str
    device: LicensedDevice
    features: list[str]
    issued_at: str
    not_after: str | None


class Licence(Out):
    """A signed feature licence as the device checks it (``licence``, ``signature``, ``chain``)."""

    id: str
    ledger_entry: int
    licence: LicenceBody
    signature: str = Field(description="By the product's licence signer over the licence's canonical JSON, base64")
    chain: list[str] = Field(description="The signer's certificate chain below the root, PEM")


class LicenceSigner(Out):
    product_id: str
    generation: int
    state: str
    certificate_serial: str = Field(description="hex")
    not_after: str
    created_at: str
    retired_at: str | None
    revoked_at: str | None
    revocation_reason: str | None
    certificate_pem: str
