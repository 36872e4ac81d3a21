"""The re-enrolment decision (EST simplereenroll): a provisioned unit renewing its certificate, as small
policies over what the database knows about it, in a fixed order (the first refusal wins)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fabguard.domain.errors import Refusal
from fabguard.domain.identities.matter_ids import PaiIds, dac_agrees_with_onboarding
from fabguard.domain.issuance import CsrFacts, MatterPai, dac_possible
from fabguard.domain.values import KeyType


@dataclass(frozen=True, slots=True)
class ReenrolmentRequest:
    """A provisioned unit asking to renew its certificate, and what the database knows about it."""

    serial: str
    revoked: bool
    csr: CsrFacts
    allowed_key_types: tuple[KeyType, ...]
    new_key_owner_serial: str | None  # the unit that holds the CSR's key already, if the key is a new one
    issuing_ca: str
    issuing_ca_usable: bool
    # The key changes and the product requires key attestation, which a re-enrolment cannot carry.
    new_key_unattested: bool = False
    matter_pai: MatterPai | None = None  # the unit's issuing CA, when it is a Matter PAI
    # The unit's issuing CA is a site agent's (ADR 0010): its key is at the agent, not here.
    issuing_ca_at_agent: bool = False
    # The vendor and product ID of the unit's onboarding payload (its allocation), None without Matter data.
    onboarding: tuple[int, int] | None = None


ReenrolmentPolicy = Callable[[ReenrolmentRequest], None]


def unit_not_revoked(r: ReenrolmentRequest) -> None:
    if r.revoked:
        raise Refusal("unit_revoked", f"unit {r.serial} was revoked; it cannot renew its certificate")


def csr_names_the_unit(r: ReenrolmentRequest) -> None:
    if r.csr.subject_serial != r.serial:
        raise Refusal("serial_mismatch", f"the CSR names {r.csr.subject_serial!r}, the unit is {r.serial}")


def key_type_still_allowed(r: ReenrolmentRequest) -> None:
    if r.csr.key_type not in r.allowed_key_types:
        raise Refusal("key_type_not_allowed", f"key type {r.csr.key_type.value} is not allowed")


def new_key_unseen(r: ReenrolmentRequest) -> None:
    if r.new_key_owner_serial is not None:
        raise Refusal("key_reused", f"this public key already belongs to serial {r.new_key_owner_serial} (clone alarm)")


def new_key_attested(r: ReenrolmentRequest) -> None:
    if r.new_key_unattested:
        raise Refusal(
            "attestation_missing",
            f"unit {r.serial}'s product requires key attestation: renew with the same key, or provision again",
        )


def issuing_ca_can_sign(r: ReenrolmentRequest) -> None:
    if r.issuing_ca_at_agent:
        raise Refusal(
            "issuing_ca_revoked",
            f"the unit's issuing CA {r.issuing_ca} is a site agent's CA, whose key is at the agent: this server "
            "cannot sign for it (re-enrol at the agent while its lease runs)",
        )
    if not r.issuing_ca_usable:
        raise Refusal("issuing_ca_revoked", f"the unit's issuing CA {r.issuing_ca} cannot sign")


def matter_dac_still_possible(r: ReenrolmentRequest) -> None:
    dac_possible(r.issuing_ca, r.matter_pai, r.csr.key_type)


def dac_matches_onboarding(r: ReenrolmentRequest) -> None:
    """The new DAC's VID and PID (its PAI's, the unit's own) are those of the unit's onboarding payload, as
    at first issuance (``issuance.dac_matches_onboarding``): data from before that rule may disagree."""
    pai = r.matter_pai
    if pai is None or pai.vendor_id is None:
        return
    dac_agrees_with_onboarding(r.serial, r.issuing_ca, PaiIds(pai.vendor_id, pai.product_id), r.onboarding)


REENROLMENT_POLICIES: tuple[ReenrolmentPolicy, ...] = (
    unit_not_revoked,
    csr_names_the_unit,
    key_type_still_allowed,
    new_key_unseen,
    new_key_attested,
    issuing_ca_can_sign,
    matter_dac_still_possible,
    dac_matches_onboarding,
)


def authorize_reenrolment(
    request: ReenrolmentRequest, policies: Sequence[ReenrolmentPolicy] = REENROLMENT_POLICIES
) -> None:
    """Run every re-enrolment policy in order; the first refusal wins."""
    for policy in policies:
        policy(request)
