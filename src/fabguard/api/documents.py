"""The published shapes of what the API takes as sent and checks with its own parsers.

A provisioning request's ``serial``, ``csr``, ``order_id`` and ``attestation``, an OpenHTF test record, a
site agent's request and sync package, an uploaded SBOM: each is read by a parser of ours
(``api/parsing.py``, ``domain/testrecord.py``, ``pki/attestation``, ``service/agent``), which answers a
broken value with its domain code (``serial_invalid``, ``csr_invalid``, ``order_not_found``,
``attestation_invalid``, ``test_record_invalid``, ``agent_request_invalid``, ``lease_sync_invalid``,
``uploaded_sbom_invalid``) and, for a unit, records the refusal in the ledger. Pydantic must not refuse
them first with its generic ``invalid_request``.

:class:`Published` gives such a field two faces: ``/openapi.json`` shows the shape a well-formed value
has (a string of a pattern, an object with its properties, an array of records), so a generated client
is typed; the value itself is checked only as the field's own Python type (``Any``: not at all) and
reaches our parser as it was sent. The models below are that documentation: nothing validates with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, JsonValue
from pydantic_core import CoreSchema, core_schema

from fabguard.domain.testrecord import COMPARISONS, MAX_NAME
from fabguard.domain.values import _SERIAL_RE, TestOutcome
from fabguard.pki.attestation.chain import MAX_CERT_PEM, MAX_CHAIN
from fabguard.pki.attestation.tpm import MAX_BLOB
from fabguard.service.agent.sync import SYNC_FORMAT


def _as_sent(value: Any, _handler: Any) -> Any:
    return value


@dataclass(frozen=True)
class Published:
    """Annotate a field with it: ``Annotated[Any, Published(Shape)]``. Its JSON schema is ``shape``'s;
    its value is checked as the annotated type alone and kept as sent (the wrap validator never calls
    the shape's validation). Serialised as the annotated type, so an idempotency fingerprint of the body
    (``model_dump``) is what it was."""

    shape: Any

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        shown = core_schema.no_info_wrap_validator_function(_as_sent, handler.generate_schema(self.shape))
        # In validation mode a chain's JSON schema is its first step's: the shape; its value, the last step's.
        return core_schema.chain_schema([shown, handler(source)])


SERIAL = Annotated[
    str,
    Field(
        pattern=f"^{_SERIAL_RE.pattern}$",
        description="1-64 letters, digits and . : - starting with a letter or digit (else serial_invalid)",
    ),
]
ORDER_ID = Annotated[str, Field(max_length=63, description="The production order (an unknown one: order_not_found)")]
CSR = Annotated[
    str, Field(description="PKCS#10 CSR made on the device, PEM or base64 DER (else csr_invalid)", min_length=1)
]
PEM_CHAIN = Annotated[
    list[Annotated[str, Field(max_length=MAX_CERT_PEM)]],
    Field(min_length=1, max_length=MAX_CHAIN, description="PEM certificates, leaf first"),
]
BASE64_BLOB = Annotated[str, Field(max_length=MAX_BLOB * 2, description="base64")]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TpmCertifyEvidence(_Closed):
    """A TPM 2.0 certification of the CSR's key by an attestation key (AK)."""

    format: Literal["tpm2-certify"]
    attest: BASE64_BLOB = Field(description="TPMS_ATTEST of a TPM2_Certify whose extraData is the SHA-256 of the CSR")
    signature: BASE64_BLOB = Field(description="TPMT_SIGNATURE by the AK")
    public: BASE64_BLOB = Field(description="TPM2B_PUBLIC of the certified key")
    ak_chain: PEM_CHAIN = Field(description="The AK certificate (TCG AK EKU 2.23.133.8.3), then its intermediates")


class SeChainEvidence(_Closed):
    """A secure element's device certificate chain for the CSR's key."""

    format: Literal["se-chain"]
    chain: PEM_CHAIN = Field(description="The secure element's device certificate, then its vendor's intermediates")


ATTESTATION = Annotated[TpmCertifyEvidence | SeChainEvidence, Field(discriminator="format")]


_COMPARISONS: list[JsonValue] = [c for c in sorted(COMPARISONS)]


class OpenHtfUnits(BaseModel):
    name: str = Field(description="The unit's name, e.g. volt")


class OpenHtfMeasurement(BaseModel):
    """A measurement as OpenHTF writes it; only these fields are read (others are kept, unread)."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    outcome: str = Field(default="UNSET", min_length=1, max_length=MAX_NAME, description="PASS, FAIL, UNSET, ...")
    measured_value: float | str | None = Field(
        default=None, description="A number is judged against the limits, a string compared; other values are kept"
    )
    lower: float | None = Field(default=None, description="The lower limit (else read from validators)")
    upper: float | None = Field(default=None, description="The upper limit (else read from validators)")
    validators: list[str] | None = Field(default=None, description="OpenHTF's texts, e.g. '0.5 <= x <= 1.5'")
    units: OpenHtfUnits | str | None = None
    comparison: str | None = Field(
        default=None,
        description="How it was judged, in TestStand's words (default: from the limits)",
        json_schema_extra={"enum": _COMPARISONS},
    )
    expected: str | None = Field(default=None, description="The string a string measurement is compared with")


MILLIS = Annotated[int, Field(ge=0, le=10**15, description="Milliseconds since the epoch")]


class OpenHtfPhase(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    outcome: str = Field(default="PASS", min_length=1, max_length=MAX_NAME)
    start_time_millis: MILLIS | None = None
    end_time_millis: MILLIS | None = None
    measurements: dict[str, OpenHtfMeasurement] | list[OpenHtfMeasurement] = Field(
        default_factory=dict, description="By name (OpenHTF's) or as a list"
    )


class OpenHtfRecord(BaseModel):
    """An OpenHTF JSON test record (OutputToJSON). What FabGuard reads is described; the whole record is
    kept as sent. A record that breaks it is refused with test_record_invalid (serial_invalid for its
    dut_id)."""

    dut_id: SERIAL = Field(description="The unit's serial")
    station_id: str = Field(
        min_length=1, max_length=MAX_NAME, description="Kept as declared_station_id, trusted for nothing"
    )
    outcome: TestOutcome
    start_time_millis: MILLIS
    end_time_millis: MILLIS = Field(description="Not before start_time_millis")
    phases: list[OpenHtfPhase] = Field(default_factory=list)


class AgentRequestDocument(BaseModel):
    """The request file 'fabguard agent prepare' wrote (else agent_request_invalid)."""

    site_id: str
    hostnames: list[str] = Field(min_length=1, description="The names its TLS server certificate carries")
    ca_csr: str = Field(description="PEM CSR of the agent's issuing CA key (EC, self-signed)")
    server_csr: str = Field(description="PEM CSR of its TLS server key (EC, another key)")
    ledger_key: str = Field(description="The C2SP verifier key of its own ledger")


class SyncPackageDocument(BaseModel):
    """The file 'fabguard agent sync --out' wrote (else lease_sync_invalid)."""

    format: str = Field(json_schema_extra={"enum": [SYNC_FORMAT]})
    lease_id: str
    checkpoint: str = Field(description="The agent's signed checkpoint (a C2SP signed note)")
    entries: list[str] = Field(description="The agent log's entries, base64, oldest first")
    certificates: dict[str, str] = Field(description="The certificates it issued: SHA-256 (hex) to PEM")


class _Open(BaseModel):
    # CycloneDX defines many more optional fields, which differ between its versions (1.2 to 1.7): they are
    # kept as the document has them; the official schema of the declared specVersion checks them.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class SbomHash(_Open):
    alg: str = Field(description="SHA-256, SHA-512, ...")
    content: str = Field(description="hex")


class SbomComponent(_Open):
    type: str = Field(description="firmware, library, application, ...")
    name: str
    version: str | None = None
    bom_ref: str | None = Field(default=None, alias="bom-ref")
    hashes: list[SbomHash] | None = None


class SbomMetadata(_Open):
    timestamp: str | None = None
    component: SbomComponent | None = Field(default=None, description="What the SBOM describes: the image")


class SbomDependency(_Open):
    ref: str
    dependsOn: list[str] | None = None  # CycloneDX's names


class CycloneDxSbom(_Open):
    """A CycloneDX JSON SBOM: the envelope the standard fixes in every version, the rest as the document has it."""

    bomFormat: Literal["CycloneDX"]
    specVersion: str = Field(description="1.2 to 1.7")
    serialNumber: str | None = Field(default=None, description="urn:uuid:...")
    version: int | None = None
    metadata: SbomMetadata | None = None
    components: list[SbomComponent] | None = None
    dependencies: list[SbomDependency] | None = None


__all__ = [
    "ATTESTATION",
    "CSR",
    "ORDER_ID",
    "SERIAL",
    "AgentRequestDocument",
    "CycloneDxSbom",
    "OpenHtfRecord",
    "Published",
    "SyncPackageDocument",
]
