"""The issuance decision as small composable policies (authorize first, sign later).

Each policy looks at plain values gathered by the service layer and either returns or raises a
:class:`Refusal` with a stable code. They run in a fixed order, so the first failing check names the
refusal, and each can be tested alone. ``decide_issuance`` runs them: a retry (the serial's own key
again) runs ``RETRY_POLICIES`` and is answered with the certificate it has; anything else runs
``ISSUANCE_POLICIES`` and is signed. A site agent's units coming home meet the same clone rules
(``synced_unit_unseen``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TypeVar

from fabguard.domain.errors import InvalidRequest, Refusal
from fabguard.domain.identities.matter_ids import PaiIds, dac_agrees_with_onboarding
from fabguard.domain.matter_dac import MatterPai as MatterPai
from fabguard.domain.matter_dac import dac_possible as dac_possible
from fabguard.domain.matter_dac import dac_refused as dac_refused
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
    # The unit already issued under this serial (for this product), if any: its order, and its revocation.
    serial_order_id: str | None = None
    serial_revoked: bool = False
    serial_revocation_reason: str | None = None


# The states in which a CA signs: ``retired`` still signs what it signed before (re-enrolment, retries).
CA_STATES_THAT_SIGN = frozenset({"active", "retired"})


@dataclass(frozen=True, slots=True)
class IssuingCaFacts:
    """The order's issuing CA as the registry holds it: its state (None: the registry has no such CA) and,
    for a Matter PAI, what its subject says (None: an IEEE 802.1AR IDevID issuer)."""

    name: str
    state: str | None
    matter_pai: MatterPai | None = None

    @property
    def can_sign(self) -> bool:
        return self.state in CA_STATES_THAT_SIGN


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
class IdentityFacts:
    """The product's identity pools as they bear on one unit (docs/identities.md): whether the product
    takes only allocated serials, the order this serial was allocated to (None: never allocated), whether
    the unit draws its MAC addresses and Matter data now (pools, and no allocation yet), how many units'
    identities the order holds (the group's own draws counted) and which pool, if any, has none left;
    ``matter_ids``: the vendor and product ID of the unit's onboarding payload, as allocated or as it would
    be drawn now (None: it has no Matter data)."""

    serials_required: bool = False
    allocated_order_id: str | None = None
    draws: bool = False
    order_allocated: int = 0
    exhausted: str | None = None
    matter_ids: tuple[int, int] | None = None


NO_IDENTITIES = IdentityFacts()


@dataclass(frozen=True, slots=True)
class IssuanceRequest:
    fixture: FixtureFacts
    order: OrderFacts
    allowed_key_types: tuple[KeyType, ...]
    serial: Serial
    csr: CsrFacts
    history: UnitHistory
    now: datetime
    issuing_ca: IssuingCaFacts
    attestation: AttestationFacts = ATTESTATION_OFF
    identity: IdentityFacts = NO_IDENTITIES


Policy = Callable[[IssuanceRequest], None]

_Order = TypeVar("_Order")


def order_found(order_id: str, order: _Order | None) -> _Order:
    """The order a unit names, or ``order_not_found``: the one rule that comes before there is a request
    to decide (every policy reads the order)."""
    if order is None:
        raise Refusal("order_not_found", f"no order {order_id!r}")
    return order


def active_fixture(fixture: FixtureFacts) -> None:
    """A revoked fixture may do nothing: not provision, not enrol again, not authenticate."""
    if fixture.revoked:
        raise Refusal("fixture_revoked", f"fixture {fixture.id} has been revoked")


def fixture_active(r: IssuanceRequest) -> None:
    active_fixture(r.fixture)


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


def serial_not_revoked(r: IssuanceRequest) -> None:
    """A revoked unit stays revoked: neither a retry nor a new key brings it back."""
    if r.history.serial_revoked:
        raise Refusal(
            "unit_revoked", f"unit {r.serial} was revoked ({r.history.serial_revocation_reason}); it stays revoked"
        )


def retry_on_its_order(r: IssuanceRequest) -> None:
    """A retry (the serial's own key again) gets its certificate from the order that issued it, no other."""
    issued_on = r.history.serial_order_id
    if issued_on is not None and issued_on != r.order.id:
        raise Refusal("serial_has_other_key", f"serial {r.serial} was provisioned on order {issued_on}")


def _serial_keeps_key(serial: str, key_fingerprint: str, history: UnitHistory) -> None:
    known = history.serial_key_fingerprint
    if known is not None and known != key_fingerprint:
        raise Refusal(
            "serial_has_other_key", f"serial {serial} was already provisioned with another key (possible clone)"
        )


def _key_unseen(serial: str, history: UnitHistory) -> None:
    owner = history.key_owner_serial
    if owner is not None and owner != serial:
        raise Refusal("key_reused", f"this public key already belongs to serial {owner} (clone alarm)")


def serial_keeps_its_key(r: IssuanceRequest) -> None:
    _serial_keeps_key(r.serial.value, r.csr.key_fingerprint, r.history)


def key_unseen(r: IssuanceRequest) -> None:
    _key_unseen(r.serial.value, r.history)


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


def serial_allocated(r: IssuanceRequest) -> None:
    """A serial allocated to an order is provisioned on that order only; a product that takes only allocated
    serials provisions no serial that was never allocated."""
    i = r.identity
    if i.allocated_order_id is not None and i.allocated_order_id != r.order.id:
        raise Refusal(
            "serial_not_allocated",
            f"serial {r.serial.value} was allocated to order {i.allocated_order_id}, not {r.order.id}",
        )
    if i.serials_required and i.allocated_order_id is None:
        raise Refusal(
            "serial_not_allocated",
            f"product {r.order.product_id} takes only allocated serials, and serial {r.serial.value} was never allocated",
        )


def order_holds_identities(order_id: str, quota: int, allocated: int) -> None:
    """An order draws identities for no more units than its quota."""
    if allocated >= quota:
        raise Refusal("quota_exhausted", f"order {order_id} has allocated identities for all its {quota} units")


def pool_left(product_id: str, exhausted: str | None) -> None:
    if exhausted is not None:
        raise Refusal("identity_pool_exhausted", f"product {product_id}'s {exhausted} has no unit left")


def identities_left(r: IssuanceRequest) -> None:
    """A unit that draws its identities at provisioning finds them: under its order's quota, in its pools."""
    i = r.identity
    if i.draws:
        order_holds_identities(r.order.id, r.order.quota, i.order_allocated)
        pool_left(r.order.product_id, i.exhausted)


def order_ca_can_sign(r: IssuanceRequest) -> None:
    ca = r.issuing_ca
    if not ca.can_sign:
        raise Refusal("issuing_ca_revoked", f"order {r.order.id}'s issuing CA {ca.name} is {ca.state or 'missing'}")


def matter_dac_possible(r: IssuanceRequest) -> None:
    """Under a Matter PAI, the unit gets a DAC: the PAI names the product, and the key is P-256."""
    dac_possible(r.issuing_ca.name, r.issuing_ca.matter_pai, r.csr.key_type)


def dac_matches_onboarding(r: IssuanceRequest) -> None:
    """Under a Matter PAI, the DAC's VID and PID (the PAI's) are those of the unit's onboarding payload."""
    pai = r.issuing_ca.matter_pai
    if pai is None or pai.vendor_id is None:
        return
    ids = PaiIds(pai.vendor_id, pai.product_id)
    dac_agrees_with_onboarding(r.serial.value, r.issuing_ca.name, ids, r.identity.matter_ids)


ISSUANCE_POLICIES: tuple[Policy, ...] = (
    fixture_active,
    fixture_at_order_site,
    serial_not_revoked,
    order_active,
    order_in_window,
    key_type_allowed,
    csr_names_serial,
    serial_allocated,
    serial_keeps_its_key,
    key_unseen,
    key_attested,
    passed_test,
    quota_left,
    identities_left,
    order_ca_can_sign,
    matter_dac_possible,
    dac_matches_onboarding,
)

# A retry (the serial presents the key it was issued with) is answered with the certificate it has, for
# free, once the fixture may ask and the unit is neither revoked nor another order's.
RETRY_POLICIES: tuple[Policy, ...] = (fixture_active, fixture_at_order_site, serial_not_revoked, retry_on_its_order)


class Decision(Enum):
    ISSUE = "issue"  # sign a new certificate
    REPLAY = "replay"  # answer with the certificate the unit already has


def authorize_issuance(request: IssuanceRequest, policies: Sequence[Policy] = ISSUANCE_POLICIES) -> None:
    """Run every policy in order; the first refusal wins."""
    for policy in policies:
        policy(request)


def decide_issuance(request: IssuanceRequest) -> Decision:
    """A retry is replayed once :data:`RETRY_POLICIES` allow it; any other request runs every issuance policy."""
    known = request.history.serial_key_fingerprint
    if known is not None and known == request.csr.key_fingerprint:
        authorize_issuance(request, RETRY_POLICIES)
        return Decision.REPLAY
    authorize_issuance(request)
    return Decision.ISSUE


def synced_unit_unseen(serial: str, key_fingerprint: str, history: UnitHistory) -> None:
    """A unit a site agent issued offline, against what was known without it: the clone rules of issuance
    (a key another serial holds, a serial issued with another key), key first; and a unit issued again
    with the key it already had is a clone too (``key_reused``: there is no retry offline)."""
    _key_unseen(serial, history)
    _serial_keeps_key(serial, key_fingerprint, history)
    if history.key_owner_serial is not None:
        raise Refusal(
            "key_reused", f"unit {serial} was already issued with this key: a second certificate is a clone's"
        )
