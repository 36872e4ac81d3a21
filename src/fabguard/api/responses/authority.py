"""Answers about certificate authorities, requests under dual control and revocation."""

from __future__ import annotations

from pydantic import Field, JsonValue

from fabguard.api.responses import Out


class Approval(Out):
    """A request under dual control (docs/roles.md): pending until a second person approves or rejects it."""

    id: int
    kind: str = Field(description="What is asked (the act)")
    summary: str
    target: str = Field(description="What it acts on (a CA, an order, a product, ...)")
    parameters: dict[str, JsonValue]
    state: str = Field(description="pending, approved, rejected or expired")
    requested_by: str
    requested_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    result: dict[str, JsonValue] | None = Field(description="What carrying it out answered, once approved")


class CaCsr(Out):
    name: str
    csr: str = Field(description="The new CA key's certificate signing request, PEM, for the offline root")


class Ca(Out):
    name: str
    role: str
    state: str
    site_id: str | None
    product_id: str | None
    key: str = Field(description="Where its key is kept (the key reference's scheme)")
    subject: str | None
    not_after: str | None
    cert_serial: str | None


class RevokedUnit(Out):
    serial: str
    order_id: str
    cert_serial: str
    reason: str
    crl_updated: bool = Field(
        description="Whether this server re-signed its CA's CRL (not for a site agent's CA, whose key is the agent's)"
    )


class RevokedUnits(Out):
    order_id: str
    revoked: int = Field(description="How many units were revoked")
