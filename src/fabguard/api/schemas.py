"""Request bodies (they document the API in /openapi.json). Deep checks live in the domain."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.documents import (
    ATTESTATION,
    CSR,
    ORDER_ID,
    SERIAL,
    AgentRequestDocument,
    OpenHtfRecord,
    Published,
)
from fabguard.api.parsing import Day, Timestamp
from fabguard.domain.issuance import AttestationPolicy
from fabguard.domain.values import OrderState, Role


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductIn(_Strict):
    id: str = Field(description="Slug: lower-case letters, digits and '-'", max_length=63)
    name: str = Field(max_length=200)
    key_types: list[str] = Field(default=["ec-p256"], description="Allowed device key types: ec-p256, ec-p384, ed25519")
    cert_lifetime_days: int | None = Field(
        default=None, description="Device certificate lifetime; unset = 99991231235959Z"
    )


class ProductComplianceIn(_Strict):
    support_until: Day = Field(description="The last day of security support (CRA support period), YYYY-MM-DD")
    vulnerability_contact: str = Field(
        max_length=500, description="Where vulnerabilities are reported: an e-mail address, mailto: or https:// URI"
    )


class SiteIn(_Strict):
    id: str = Field(max_length=63)
    name: str = Field(max_length=200)


class OrderIn(_Strict):
    id: str | None = Field(default=None, max_length=63, description="Order id; generated when omitted")
    product_id: str = Field(max_length=63)
    site_id: str = Field(max_length=63)
    quota: int = Field(ge=0, le=100_000_000)
    valid_from: Timestamp | None = Field(default=None, description="RFC 3339 with its offset; default now")
    valid_until: Timestamp | None = Field(default=None, description="RFC 3339 with its offset; default: no end")


class OrderStateIn(_Strict):
    state: OrderState = Field(description="active, suspended or closed")


class QuotaChangeIn(_Strict):
    quota: int = Field(ge=0, le=100_000_000, description="The new quota; a raise waits for a second approver")
    reason: str = Field(max_length=500)


class FixtureIn(_Strict):
    id: str = Field(max_length=63)
    site_id: str = Field(max_length=63)


class RevokeIn(_Strict):
    reason: str = Field(max_length=500)


class RevokeUnitIn(_Strict):
    reason: str = Field(
        default="unspecified",
        description="RFC 5280 reason: unspecified, key_compromise, ca_compromise, affiliation_changed, "
        "superseded, cessation_of_operation",
    )
    note: str = Field(max_length=500, description="Why, in words (kept in the ledger)")
    product_id: str | None = Field(default=None, description="Needed only if the serial exists in several products")


class IssuingCaIn(_Strict):
    name: str = Field(max_length=63, description="Slug naming the CA, e.g. issuing-cm-shenzhen")
    site_id: str | None = Field(default=None, description="Only orders at this site use it")
    product_id: str | None = Field(default=None, description="Only orders of this product use it")


class MatterPaiIn(_Strict):
    name: str = Field(max_length=63)
    product_id: str = Field(max_length=63, description="Orders of this product get Matter DACs")
    vid: int = Field(description="Matter vendor ID (0x0001-0xFFF4)")
    pid: int = Field(description="Matter product ID (0x0001-0xFFFF)")


class CaScopeIn(_Strict):
    site_id: str | None = None
    product_id: str | None = None


class CaCertificateIn(_Strict):
    certificate: str = Field(max_length=20000, description="PEM certificate the offline root signed")


class RotateIn(_Strict):
    new_name: str = Field(max_length=63)


class TokenIn(_Strict):
    person: str = Field(
        max_length=128, description="The person it belongs to (their id or name); it carries one of their roles"
    )
    name: str | None = Field(
        default=None, max_length=128, description="A label for it (a laptop, a script); the person's name by default"
    )
    role: Role = Field(description="admin, engineer, approver, auditor, operator or field (docs/roles.md)")
    site_id: str | None = Field(
        default=None,
        max_length=63,
        description="The site an operator token sees: required for operator, refused otherwise",
    )
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=1830,
        description="Days until the token stops working (default 90, at most 365; a metrics token's at most 1830)",
    )


class EnrollIn(_Strict):
    token: str = Field(max_length=100, description="The one-time enrolment token")
    csr: str = Field(max_length=16384, description="PKCS#10 CSR, PEM or base64 DER")


ATTESTATION_DOC = (
    "Key attestation, read when the product's policy is optional or required: "
    '{"format": "tpm2-certify", "attest": base64 TPMS_ATTEST of a TPM2_Certify whose extraData is the '
    'SHA-256 of this CSR\'s DER, "signature": base64 TPMT_SIGNATURE by the AK, "public": base64 TPM2B_PUBLIC '
    'of the certified key, "ak_chain": [PEM AK certificate (an end entity with the TCG AK EKU 2.23.133.8.3), '
    'intermediates...]} or {"format": "se-chain", '
    '"chain": [PEM device certificate of the secure element, its vendor\'s intermediates...]}'
)


class ProductAttestationIn(_Strict):
    policy: AttestationPolicy = Field(
        description="off (default: not read), optional (checked when presented) or required"
    )


class AttestationRootIn(_Strict):
    kind: Literal["tpm", "se"] = Field(description="tpm (issues AK certificates) or se (a secure-element vendor's CA)")
    certificate: str = Field(max_length=8192, description="The CA certificate, PEM")


# Fields our parsers read as sent (api/documents.py): typed in /openapi.json, checked by us with our codes.
class ProvisionIn(_Strict):
    order_id: Annotated[Any, Published(ORDER_ID)] = Field(description="The production order")
    serial: Annotated[Any, Published(SERIAL)] = Field(
        description="The unit serial; must equal the CSR subject's serialNumber"
    )
    csr: Annotated[Any, Published(CSR)] = Field(description="PKCS#10 CSR made on the device, PEM or base64 DER")
    attestation: Annotated[Any, Published(ATTESTATION | None)] = Field(default=None, description=ATTESTATION_DOC)


class BatchUnit(BaseModel):
    serial: Annotated[Any, Published(SERIAL)] = None
    csr: Annotated[Any, Published(CSR)] = None
    attestation: Annotated[Any, Published(ATTESTATION | None)] = Field(default=None, description="As for a single unit")


class ProvisionBatchIn(_Strict):
    order_id: Annotated[Any, Published(ORDER_ID)]
    units: list[BatchUnit]


class TestRecordsIn(_Strict):
    __test__ = False
    records: Annotated[list[dict[str, Any]], Published(list[OpenHtfRecord])] = Field(
        description="OpenHTF JSON test records, each checked on its own"
    )


class LeaseIn(_Strict):
    units: int = Field(ge=1, le=100_000_000, description="Units of the order's quota the agent may provision")
    expires_in_minutes: int = Field(ge=1, le=90 * 24 * 60, description="How long the lease lasts (at most 90 days)")
    agent_request: Annotated[dict[str, Any], Published(AgentRequestDocument)] = Field(
        description="The request file 'fabguard agent prepare' wrote"
    )


class ResolveIn(_Strict):
    note: str = Field(max_length=500, description="What was found and done about the discrepancy")


class PersonIn(_Strict):
    name: str = Field(max_length=128, description="Their name, unique among people")
    contact: str = Field(default="", max_length=200, description="How to reach them (mail, phone)")
    roles: list[str] = Field(default_factory=list, max_length=6, description="Roles they hold (docs/roles.md)")
    site_id: str | None = Field(default=None, max_length=63, description="An operator's site (operators only)")


class RoleGrantIn(_Strict):
    # Checked by ``people.parse_roles`` (refused as ``person_invalid``, the code it always had); the schema
    # names the choices so the API says what it accepts.
    role: str = Field(
        max_length=16, description="The role to grant or revoke", json_schema_extra={"enum": [r.value for r in Role]}
    )
    site_id: str | None = Field(default=None, max_length=63, description="The site, when granting operator")


class SuspendIn(_Strict):
    reason: str = Field(max_length=500, description="Why (kept in the ledger)")


class SerialPoolIn(_Strict):
    prefix: str = Field(default="", max_length=32, description="0-32 letters, digits, '-', '.', ':' (never '/')")
    width: int = Field(default=6, description="Digits of the counter (1-18): 10**width serials")
    check: str = Field(default="iso7064-mod-37-36", description="iso7064-mod-37-36 or luhn-mod-36")
    required: bool = Field(
        default=False, description="Provision only serials allocated to the unit's order (else serial_not_allocated)"
    )


class MacPoolIn(_Strict):
    prefix: str = Field(
        max_length=16, description="The IEEE assignment: MA-L 00-1B-63, MA-M 70-B3-D5-1 or MA-S 70-B3-D5-7A-9"
    )
    per_unit: int = Field(default=1, description="Consecutive addresses a unit gets (1-64)")
    first: int = Field(default=0, description="The block's first address, as an offset in the assignment")
    count: int | None = Field(default=None, description="Addresses in the block; unset: to the assignment's end")


class MatterPoolIn(_Strict):
    vendor_id: int = Field(description="Matter vendor ID (0x0001-0xFFF4)")
    product_id: int = Field(description="Matter product ID (0x0001-0xFFFF)")
    flow: int = Field(default=0, description="Commissioning flow: 0 standard, 1 user intent, 2 custom")
    discovery: int = Field(default=2, description="Discovery capabilities: sum of 2 BLE, 4 on-network, 32 Thread, ...")
    iterations: int = Field(default=10000, description="SPAKE2+ PBKDF2 iterations (1000-100000)")


class IdentityPoolIn(_Strict):
    """A product's identity pools (docs/identities.md); at least one section."""

    serials: SerialPoolIn | None = None
    macs: MacPoolIn | None = None
    matter: MatterPoolIn | None = None


class AllocateIn(_Strict):
    order_id: Annotated[Any, Published(ORDER_ID)] = Field(description="The production order the unit is made on")
    serial: Annotated[Any, Published(SERIAL | None)] = Field(
        default=None,
        description="The unit's serial, for a product without a serial format; none when the pool draws it",
    )
