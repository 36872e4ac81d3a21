"""Answers of unit search and a serial's genealogy (``service/genealogy/unit_history.py``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue

from fabguard.api.responses import Out
from fabguard.api.responses.audit import UnitIdentityShown
from fabguard.api.responses.ledger import Checkpoint, InclusionProof
from fabguard.api.responses.orders import UnitAttestation
from fabguard.api.responses.royalties import Licence


class UnitSearch(Out):
    query: str
    serials: list[str] = Field(description="Serials starting with the query, tested or provisioned (at most 50)")


class MadeByFixture(Out):
    kind: Literal["fixture"]
    fixture_id: str


class MadeBySiteAgent(Out):
    kind: Literal["site_agent"]
    lease_id: str = Field(description="The quota lease the agent provisioned it under")
    fixture_id: str


class UnitCertificate(Out):
    serial: str = Field(description="The certificate's serial, hex")
    sha256: str
    pem: str
    revoked_at: str | None
    revocation_reason: str | None


class GenealogyUnit(Out):
    """The serial provisioned on one product's order."""

    product_id: str
    order_id: str
    site_id: str
    fixture_id: str
    made_by: Annotated[MadeByFixture | MadeBySiteAgent, Field(discriminator="kind")]
    issued_at: str
    issuing_ca: str
    certificate: UnitCertificate
    key_fingerprint: str
    attestation: UnitAttestation | None = Field(description="What key attestation backed the certificate")


class SupersededCertificate(Out):
    serial: str
    sha256: str
    issuing_ca: str
    product_id: str
    superseded_at: str


class StepMeasurement(Out):
    name: str
    outcome: str
    value: float | None
    lower: float | None
    upper: float | None


class TestStep(Out):
    __test__ = False
    phase: str
    outcome: str
    measurements: list[StepMeasurement]


class GenealogyTestRecord(Out):
    id: int
    fixture_id: str
    site_id: str
    declared_station_id: str
    outcome: str
    received_at: str
    duration_ms: int
    steps: list[TestStep]


class EntryInclusion(InclusionProof):
    checkpointed: bool = Field(description="Whether the proof ends at the newest signed checkpoint (else the tree)")


class LedgerEntry(Out):
    """An event naming the serial, as its ledger entry with its inclusion proof."""

    seq: int
    index: int = Field(description="The entry's index in the Merkle tree (seq - 1)")
    at: str
    kind: str
    area: Literal["provisioning", "refusal", "test", "firmware", "field", "licence", "site_agent", "other"]
    code: str | None
    actor: str | None
    order_id: str | None
    fixture_id: str | None
    detail: dict[str, JsonValue] = Field(description="What the event's kind records")
    inclusion: EntryInclusion


class GenealogyFieldCheck(Out):
    at: str
    seq: int | None
    genuine: bool
    reason: str | None
    clone: str | None
    place: str
    cert_sha256: str


class GenealogyIdentity(UnitIdentityShown):
    product_id: str
    order_id: str


class GenealogyLedger(Out):
    entries: list[LedgerEntry]
    checkpoint: Checkpoint | None = Field(description="The checkpoint the proofs end at, when one covers them")
    verifier_key: str


class Genealogy(Out):
    serial: str
    site_id: str | None = Field(description="The one site shown (an operator's view); null: everything")
    units: list[GenealogyUnit]
    superseded_certificates: list[SupersededCertificate]
    test_records: list[GenealogyTestRecord]
    decisions: list[LedgerEntry] = Field(description="Provisioning decisions and refusals")
    firmware: list[LedgerEntry]
    field_checks: list[GenealogyFieldCheck]
    licences: list[Licence]
    identities: list[GenealogyIdentity] = Field(description="Drawn from its product's pools; no label secret")
    ledger: GenealogyLedger
    generated_at: str
