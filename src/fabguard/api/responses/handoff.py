"""Answers of the device-cloud hand-off (AWS IoT, Azure DPS) and the signed device manifest."""

from __future__ import annotations

from pydantic import Field, JsonValue

from fabguard.api.responses import Out


class HandoffBundle(Out):
    files: dict[str, str] = Field(description="File name to contents (PEM, JSON), to give the cloud's tools")
    event_seq: int = Field(description="The ledger event that records the hand-off")
    verification_cert_serial: str = Field(description="The verification (proof-of-possession) certificate's serial")


class SignedManifest(Out):
    manifest: dict[str, JsonValue] = Field(description="The devices of the order and the checkpoint, as signed")
    signature: str = Field(description="Ed25519 by the ledger key over the manifest's canonical JSON, base64")
    signed_by: str = Field(description="The verifier key (the manifest's verifier_key)")
