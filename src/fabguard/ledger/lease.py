"""Quota leases: the signed bundle a central server hands an offline site agent.

A lease grants one agent ``units`` units of one order, at one site, until ``not_after``, under one
agent issuing CA (named by the SHA-256 of its certificate). The bundle also carries what the agent
needs to run on its own (the CA certificates, the site's fixture enrolments, the product) and is signed
as a whole with the central ledger key (Ed25519, over the canonical JSON of everything but the
signature), so nothing in it can be changed after issue. Pure: values in, values out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.domain.errors import FabGuardError
from fabguard.ledger.checkpoint import CheckpointError, parse_verifier_key

LEASE_FORMAT = "fabguard-lease-v1"


class LeaseError(FabGuardError):
    """A lease bundle that does not parse, or whose signature does not verify."""

    code = "lease_invalid"
    status = 422


@dataclass(frozen=True, slots=True)
class Lease:
    """The terms of a lease, as read from a verified bundle."""

    lease_id: str
    order_id: str
    site_id: str
    product_id: str
    units: int
    issued_at: datetime
    not_after: datetime
    agent_ca_sha256: str
    agent_ledger_key: str
    issuer_key: str

    def expired(self, now: datetime) -> bool:
        return now >= self.not_after


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes a lease signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_bundle(body: Mapping[str, Any], key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    """The bundle: ``body`` (which must name its ``issuer_key`` in its ``lease``) plus its signature."""
    if "signature" in body:
        raise LeaseError("a lease body carries no signature of its own")
    return {**body, "signature": base64.b64encode(key.sign(canonical(body))).decode()}


def open_bundle(bundle: Mapping[str, Any], trusted_issuer: str | None = None) -> Lease:
    """Verify a bundle's signature (with ``trusted_issuer``, a verifier key, when given; else with the key
    the bundle names, which proves only that it is whole) and return its terms."""
    if not isinstance(bundle, Mapping) or bundle.get("format") != LEASE_FORMAT:
        raise LeaseError(f"not a lease bundle (format {LEASE_FORMAT})")
    terms = bundle.get("lease")
    if not isinstance(terms, Mapping):
        raise LeaseError("a lease bundle has a 'lease' object")
    issuer = terms.get("issuer_key")
    if not isinstance(issuer, str) or (trusted_issuer is not None and issuer != trusted_issuer):
        raise LeaseError("the lease is not signed by the expected central server")
    try:
        _, _, public_key = parse_verifier_key(issuer)
        signature = base64.b64decode(str(bundle.get("signature", "")), validate=True)
        public_key.verify(signature, canonical({k: v for k, v in bundle.items() if k != "signature"}))
    except (CheckpointError, binascii.Error, InvalidSignature):
        raise LeaseError("the lease signature does not verify: the bundle was changed or not signed") from None
    return _terms(terms)


def _terms(t: Mapping[str, Any]) -> Lease:
    try:
        lease = Lease(
            lease_id=str(t["lease_id"]),
            order_id=str(t["order_id"]),
            site_id=str(t["site_id"]),
            product_id=str(t["product_id"]),
            units=int(t["units"]),
            issued_at=datetime.fromisoformat(str(t["issued_at"])),
            not_after=datetime.fromisoformat(str(t["not_after"])),
            agent_ca_sha256=str(t["agent_ca_sha256"]),
            agent_ledger_key=str(t["agent_ledger_key"]),
            issuer_key=str(t["issuer_key"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LeaseError(f"malformed lease terms: {exc}") from None
    if lease.units <= 0 or lease.not_after.tzinfo is None or lease.not_after <= lease.issued_at:
        raise LeaseError("a lease grants at least one unit and ends after it was issued")
    return lease
