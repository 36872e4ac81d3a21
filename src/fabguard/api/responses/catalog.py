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


class Enrollment(Out):
    fixture_id: str
    site_id: str
    certificate: str = Field(description="The fixture's client certificate, PEM")
    chain: list[str] = Field(description="Its issuing chain, PEM")
    ca_certificates: list[str] = Field(description="The CA certificates to trust for the server, PEM")
