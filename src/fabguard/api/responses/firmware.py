"""Answers about firmware releases."""

from __future__ import annotations

from pydantic import Field, JsonValue

from fabguard.api.responses import Out


class Release(Out):
    id: str
    product_id: str
    version: str
    notes: str
    size: int = Field(description="The image's size in bytes")
    sha256: str = Field(description="The image's SHA-256, hex")
    state: str
    dual_control: bool = Field(description="Whether approving it needs a second person")
    uploaded_by: str
    uploaded_at: str
    approved_by: str | None
    approved_at: str | None
    withdrawn_by: str | None
    withdrawn_at: str | None
    withdraw_reason: str | None
    manifest: dict[str, JsonValue] = Field(description="The signed release manifest")
    manifest_signature: str = Field(description="The manifest's signature, base64")
    signer: str
    orders: list[str] = Field(description="The orders it is attached to")
