"""Answers about quota leases (a site agent provisioning offline) and their sync."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out


class Lease(Out):
    id: str
    order_id: str
    site_id: str
    units: int = Field(description="Units of the order's quota the agent may provision")
    issued_at: str
    not_after: str
    issued_by: str
    agent_ca: str = Field(description="The site agent's CA, which signs the units it provisions")
    state: str = Field(description="active, discrepancy, resolved, or closed (its unused units returned: ADR 0022)")
    synced_size: int = Field(description="The size of the agent's log accepted so far")
    synced_at: str | None
    units_synced: int
    discrepancy: str | None = Field(description="What the last sync found wrong, until resolved")


class LeaseSync(Out):
    lease_id: str
    size: int = Field(description="The agent log's size now accepted")
    entries: int = Field(description="New entries in this sync")
    units: int = Field(description="New units accepted (clones excepted)")
    units_synced: int
    clones: list[str] = Field(description="Units found to be clones: the lease is in discrepancy")
    resent: bool | None = Field(default=None, description="Present (true) when this answers a sync sent again")


class LeaseResolved(Out):
    lease_id: str
    state: str


class LeaseClosed(Out):
    """A lease closed (ADR 0022): the units its agent did not make went back to the order."""

    lease_id: str
    order_id: str
    state: str = Field(description="closed")
    leased: int = Field(description="The units the lease took from the order")
    made: int = Field(description="The units the agent's synced log made")
    returned: int = Field(description="leased - made: the order's used units decreased by exactly these")
    order_used: int = Field(description="The order's used units after the close")
    order_quota: int
    already: bool = Field(
        description="The lease was closed before: nothing changed, the figures are its close's (a retry is safe)"
    )


class LeaseTerms(Out):
    lease_id: str
    order_id: str
    site_id: str
    product_id: str
    units: int
    issued_at: str
    not_after: str
    agent_ca_sha256: str = Field(description="The SHA-256 of the agent CA's certificate (DER), hex")
    agent_ledger_key: str = Field(description="The C2SP verifier key of the agent's own ledger")
    issuer_key: str = Field(description="The verifier key of the central ledger key that signed the bundle")


class LeaseProduct(Out):
    id: str
    name: str
    key_types: list[str]
    cert_lifetime_days: int | None


class LeaseSite(Out):
    id: str
    name: str


class LeaseFixture(Out):
    """An enrolled fixture of the site, which the agent lets in by its certificate."""

    id: str
    site_id: str
    enrolled_at: str | None
    cert_fingerprint: str
    cert_serial: str | None
    cert_not_after: str | None


class LeaseCertificates(Out):
    root: str = Field(description="PEM")
    station: str = Field(description="The station CA (fixtures' client certificates), PEM")
    agent_ca: str = Field(description="The agent's issuing CA, certified under the root, PEM")
    server: str = Field(description="The agent's TLS server certificate, PEM")


class LeasePublication(Out):
    """Where the agent's units name this server for their status, and the status signer's key (ADR 0020)."""

    ca: str = Field(description="The agent CA's name")
    crl_url: str
    ca_issuers_url: str
    ocsp_url: str
    status_key: str = Field(description="The public key (PEM) the agent CA certifies as its status signer")


class LeaseBundle(Out):
    """The signed bundle 'fabguard agent init --lease' reads; ``signature`` covers the rest (no secret)."""

    format: str = Field(description="fabguard-lease-v1")
    lease: LeaseTerms
    organization: str
    product: LeaseProduct
    site: LeaseSite
    fixtures: list[LeaseFixture]
    certificates: LeaseCertificates
    publication: LeasePublication | None = Field(
        default=None, description="Absent from bundles of leases issued before ADR 0020 (their units name the agent)"
    )
    signature: str = Field(
        description="Ed25519 by the central ledger key over the canonical JSON (sorted keys, no spaces) of the "
        "bundle without its signature, base64"
    )
