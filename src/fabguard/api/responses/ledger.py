"""Answers of the transparency ledger: checkpoints, proofs, the key chain, witnesses and cosignatures."""

from __future__ import annotations

from pydantic import Field, JsonValue

from fabguard.api.responses import Out


class Checkpoint(Out):
    size: int = Field(description="The tree size it signs")
    root: str = Field(description="The tree head (base64 SHA-256)")
    note: str = Field(description="The C2SP signed note")


class CosignedCheckpoint(Out):
    size: int
    root: str = Field(description="The tree head (base64 SHA-256)")
    witnesses: list[str] = Field(description="The witnesses whose cosignatures the note carries")
    note: str = Field(description="The signed note with the cosignatures appended")


class LedgerKey(Out):
    verifier: str = Field(description="The C2SP verifier key")
    from_size: int
    until_size: int | None
    endorsement: str | None = Field(description="The previous key's signature over this one (base64)")
    retirement: str | None = Field(description="This key's signature retiring it (base64)")


class LedgerKeyChain(Out):
    format: str = Field(description="fabguard-ledger-keys/v1")
    origin: str
    keys: list[LedgerKey]


class InclusionProof(Out):
    index: int
    tree_size: int
    root: str
    entry: str = Field(description="The entry, as hashed")
    leaf_hash: str
    proof: list[str] = Field(description="RFC 9162 inclusion proof, base64 hashes")


class ConsistencyProof(Out):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes")


class Witness(Out):
    name: str
    key_id: str = Field(description="hex")
    verifier_key: str
    site_id: str
    registered_by: str
    registered_at: str


class Cosignatures(Out):
    size: int
    witnesses: list[str] = Field(description="The witnesses whose cosignatures were added")


class SignedReport(Out):
    """A reconciliation report or royalty statement and its signature (``fabguard audit verify-report``)."""

    report: dict[str, JsonValue] = Field(description="The figures, as signed (their canonical JSON)")
    signature: str = Field(description="Ed25519 by the ledger key over the report's canonical JSON, base64")
    signed_by: str = Field(description="The verifier key (the report's verifier_key)")
