"""Answers about the catalogue (products, sites) and fixtures."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out


class Product(Out):
    id: str
    name: str
    key_types: list[str] = Field(description="Allowed device key types")
    cert_lifetime_days: int | None = Field(description="Device certificate lifetime; null = 99991231235959Z")
    support_until: str | None = Field(description="The last day of security support (CRA), YYYY-MM-DD")
    vulnerability_contact: str | None


class Site(Out):
    id: str
    name: str


class AttestationRoot(Out):
    kind: str = Field(description="tpm or se")
    sha256: str
    subject: str
    added_at: str


class NewAttestationRoot(Out):
    kind: str = Field(description="tpm or se")
    sha256: str = Field(description="The root certificate's SHA-256, hex: what removes it")
    subject: str


class ProductAttestation(Out):
    product_id: str
    policy: str = Field(description="off, optional or required")
    roots: list[AttestationRoot]


class Fixture(Out):
    id: str
    site_id: str
    state: str = Field(description="awaiting_enrollment, enrolled or revoked")
    created_at: str
    enrolled_at: str | None
    cert_serial: str | None
    cert_not_after: str | None
    revoked_at: str | None
    revoked_reason: str | None


class NewFixture(Fixture):
    enrollment_token: str = Field(description="The one-time token the fixture enrols with (shown once)")


class EnrollmentToken(Out):
    fixture_id: str
    enrollment_token: str = Field(description="A new one-time token the fixture enrols with (shown once)")


class Enrollment(Out):
    fixture_id: str
    site_id: str
    certificate: str = Field(description="The fixture's client certificate, PEM")
    chain: list[str] = Field(description="Its issuing chain, PEM")
    ca_certificates: list[str] = Field(description="The CA certificates to trust for the server, PEM")


class SerialPool(Out):
    prefix: str
    width: int = Field(description="Digits of the counter")
    check: str = Field(description="iso7064-mod-37-36 or luhn-mod-36")
    required: bool = Field(description="Only serials allocated to the unit's order are provisioned")


class MacPool(Out):
    prefix: str = Field(description="The IEEE assignment, as declared")
    assignment: str = Field(description="MA-L, MA-M or MA-S")
    per_unit: int = Field(description="Consecutive addresses a unit gets")
    first: int = Field(description="The block's first address, as an offset in the assignment")
    count: int = Field(description="Addresses in the block")
    first_address: str
    units: int = Field(description="Units the block serves")


class MatterPool(Out):
    vendor_id: int
    product_id: int
    flow: int
    discovery: int
    iterations: int


class IdentityPools(Out):
    """A product's identity pools (docs/identities.md) and how much they gave out."""

    product_id: str
    serials: SerialPool | None
    macs: MacPool | None
    matter: MatterPool | None
    next_serial: int = Field(description="The serial counter's next value")
    next_mac_unit: int = Field(description="The next unit's place in the MAC block")
    units_allocated: int = Field(description="Units whose identities were given out")
