"""The issuance decision as small composable policies (authorize first, sign later).

Each policy looks at plain values gathered by the service layer and either returns or raises a
:class:`Refusal` with a stable code. They run in a fixed order, so the first failing check names the
refusal, and each can be tested alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from fabguard.domain.errors import InvalidRequest, Refusal
from fabguard.domain.values import KeyType, OrderState, Serial, TestOutcome


@dataclass(frozen=True, slots=True)
class FixtureFacts:
    id: str
    site_id: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class OrderFacts:
    id: str
    product_id: str
    site_id: str
    state: OrderState
    valid_from: datetime
    valid_until: datetime | None
    quota: int
    used: int


@dataclass(frozen=True, slots=True)
class CsrFacts:
    """What the PKI layer learnt from a CSR whose signature and shape it already checked."""

    subject_serial: str
    key_type: KeyType
    key_fingerprint: str


@dataclass(frozen=True, slots=True)
class UnitHistory:
    """What the database knows about this serial and this key before the decision."""

    # The outcome of the latest record uploaded by a fixture of the order's site: a record from another
    # site is kept, but decides nothing here.
    latest_test: TestOutcome | None
    serial_key_fingerprint: str | None
    key_owner_serial: str | None


class AttestationPolicy(Enum):
    """A product's key-attestation policy: ``off`` (the default: attestation is not read), ``optional``
    (checked when presented, refused when it fails) or ``required`` (no certificate without it)."""

    OFF = "off"
    OPTIONAL = "optional"
    REQUIRED = "required"

    @classmethod
    def parse(cls, value: str) -> AttestationPolicy:
        try:
            return cls(value)
        except ValueError:
            raise InvalidRequest("the attestation policy is one of off, optional, required") from None


@dataclass(frozen=True, slots=True)
class AttestationFacts:
    """The product's policy and what the PKI layer found in the request's attestation, if it carried one."""

    policy: AttestationPolicy
    verified: bool = False
    failure: Refusal | None = None


ATTESTATION_OFF = AttestationFacts(AttestationPolicy.OFF)


@dataclass(frozen=True, slots=True)
class IssuanceRequest:
    fixture: FixtureFacts
    order: OrderFacts
    allowed_key_types: tuple[KeyType, ...]
    serial: Serial
    csr: CsrFacts
    history: UnitHistory
    now: datetime
    attestation: AttestationFacts = ATTESTATION_OFF


Policy = Callable[[IssuanceRequest], None]


def fixture_active(r: IssuanceRequest) -> None:
    if r.fixture.revoked:
        raise Refusal("fixture_revoked", f"fixture {r.fixture.id} has been revoked")


def fixture_at_order_site(r: IssuanceRequest) -> None:
    if r.fixture.site_id != r.order.site_id:
        raise Refusal(
            "wrong_site",
            f"fixture {r.fixture.id} belongs to site {r.fixture.site_id}, "
            f"order {r.order.id} is for site {r.order.site_id}",
        )


def order_active(r: IssuanceRequest) -> None:
    if r.order.state is not OrderState.ACTIVE:
        raise Refusal("order_inactive", f"order {r.order.id} is {r.order.state.value}")


def order_in_window(r: IssuanceRequest) -> None:
    if r.now < r.order.valid_from:
        raise Refusal("order_not_yet_valid", f"order {r.order.id} is valid from {r.order.valid_from.isoformat()}")
    if r.order.valid_until is not None and r.now >= r.order.valid_until:
        raise Refusal("order_expired", f"order {r.order.id} expired at {r.order.valid_until.isoformat()}")


def key_type_allowed(r: IssuanceRequest) -> None:
    if r.csr.key_type not in r.allowed_key_types:
        allowed = ", ".join(k.value for k in r.allowed_key_types)
        raise Refusal(
            "key_type_not_allowed",
            f"key type {r.csr.key_type.value} is not allowed for product {r.order.product_id} ({allowed})",
        )


def csr_names_serial(r: IssuanceRequest) -> None:
    if r.csr.subject_serial != r.serial.value:
        raise Refusal(
            "serial_mismatch",
            f"the CSR subject names serial {r.csr.subject_serial!r}, the request names {r.serial.value!r}",
        )


def serial_keeps_its_key(r: IssuanceRequest) -> None:
    known = r.history.serial_key_fingerprint
    if known is not None and known != r.csr.key_fingerprint:
        raise Refusal(
            "serial_has_other_key",
            f"serial {r.serial.value} was already provisioned with another key (possible clone)",
        )


def key_unseen(r: IssuanceRequest) -> None:
    owner = r.history.key_owner_serial
    if owner is not None and owner != r.serial.value:
        raise Refusal("key_reused", f"this public key already belongs to serial {owner} (clone alarm)")


def key_attested(r: IssuanceRequest) -> None:
    """The product's attestation policy: a failed attestation is refused unless the policy is off."""
    a = r.attestation
    if a.policy is AttestationPolicy.OFF:
        return
    if a.failure is not None:
        raise a.failure
    if not a.verified and a.policy is AttestationPolicy.REQUIRED:
        raise Refusal(
            "attestation_missing",
            f"product {r.order.product_id} requires key attestation and the request carries none",
        )


def passed_test(r: IssuanceRequest) -> None:
    """The latest test at the order's site passed (``history.latest_test`` counts that site's records only)."""
    site = r.order.site_id
    if r.history.latest_test is None:
        raise Refusal(
            "test_missing",
            f"no fixture of site {site} has uploaded a test record for serial {r.serial.value}",
        )
    if r.history.latest_test is not TestOutcome.PASS:
        raise Refusal(
            "test_failed",
            f"the latest test of serial {r.serial.value} at site {site} ended {r.history.latest_test.value}",
        )


def quota_left(r: IssuanceRequest) -> None:
    """A cheap early look; the binding check is the atomic reservation in the store."""
    if r.order.used >= r.order.quota:
        raise Refusal("quota_exhausted", f"order {r.order.id} has used all {r.order.quota} units")


ISSUANCE_POLICIES: tuple[Policy, ...] = (
    fixture_active,
    fixture_at_order_site,
    order_active,
    order_in_window,
    key_type_allowed,
    csr_names_serial,
    serial_keeps_its_key,
    key_unseen,
    key_attested,
    passed_test,
    quota_left,
)


def authorize_issuance(request: IssuanceRequest, policies: Sequence[Policy] = ISSUANCE_POLICIES) -> None:
    """Run every policy in order; the first refusal wins."""
    for policy in policies:
        policy(request)


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
    if not r.issuing_ca_usable:
        raise Refusal("issuing_ca_revoked", f"the unit's issuing CA {r.issuing_ca} cannot sign")


REENROLMENT_POLICIES: tuple[ReenrolmentPolicy, ...] = (
    unit_not_revoked,
    csr_names_the_unit,
    key_type_still_allowed,
    new_key_unseen,
    new_key_attested,
    issuing_ca_can_sign,
)


def authorize_reenrolment(
    request: ReenrolmentRequest, policies: Sequence[ReenrolmentPolicy] = REENROLMENT_POLICIES
) -> None:
    """Run every re-enrolment policy in order; the first refusal wins."""
    for policy in policies:
        policy(request)
