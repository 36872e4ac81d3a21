"""The issuance decision: each policy alone (passes, or refuses with its code), then their order.

Pure values and a fixed ``now``: no database, no clock, no crypto.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fabguard.domain.errors import REFUSAL_STATUS, Refusal
from fabguard.domain.issuance import (
    ATTESTATION_OFF,
    ISSUANCE_POLICIES,
    RETRY_POLICIES,
    AttestationFacts,
    AttestationPolicy,
    CsrFacts,
    Decision,
    FixtureFacts,
    IdentityFacts,
    IssuanceRequest,
    IssuingCaFacts,
    MatterPai,
    OrderFacts,
    Policy,
    UnitHistory,
    active_fixture,
    authorize_issuance,
    csr_names_serial,
    dac_refused,
    decide_issuance,
    fixture_active,
    fixture_at_order_site,
    key_attested,
    key_type_allowed,
    key_unseen,
    matter_dac_possible,
    order_active,
    order_ca_can_sign,
    order_found,
    order_in_window,
    passed_test,
    quota_left,
    retry_on_its_order,
    serial_keeps_its_key,
    serial_not_revoked,
    synced_unit_unseen,
)
from fabguard.domain.reenrolment import (
    REENROLMENT_POLICIES,
    ReenrolmentPolicy,
    ReenrolmentRequest,
    authorize_reenrolment,
    csr_names_the_unit,
    issuing_ca_can_sign,
    key_type_still_allowed,
    matter_dac_still_possible,
    new_key_attested,
    new_key_unseen,
    unit_not_revoked,
)
from fabguard.domain.values import KeyType, OrderState, Serial, TestOutcome

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
KEY_FP = "a" * 64
OTHER_FP = "b" * 64


def allowed_request() -> IssuanceRequest:
    """A request every policy allows: the baseline each test changes one thing in."""
    return IssuanceRequest(
        fixture=FixtureFacts(id="fx-1", site_id="cm-a", revoked=False),
        order=OrderFacts(
            id="po-1",
            product_id="sensor",
            site_id="cm-a",
            state=OrderState.ACTIVE,
            valid_from=NOW - timedelta(days=1),
            valid_until=NOW + timedelta(days=30),
            quota=10,
            used=3,
        ),
        allowed_key_types=(KeyType.EC_P256,),
        serial=Serial("SN0000001"),
        csr=CsrFacts(subject_serial="SN0000001", key_type=KeyType.EC_P256, key_fingerprint=KEY_FP),
        history=UnitHistory(latest_test=TestOutcome.PASS, serial_key_fingerprint=None, key_owner_serial=None),
        now=NOW,
        issuing_ca=IssuingCaFacts("issuing", "active"),
    )


def with_fixture(r: IssuanceRequest, **kw: object) -> IssuanceRequest:
    return replace(r, fixture=replace(r.fixture, **kw))


def with_order(r: IssuanceRequest, **kw: object) -> IssuanceRequest:
    return replace(r, order=replace(r.order, **kw))


def with_csr(r: IssuanceRequest, **kw: object) -> IssuanceRequest:
    return replace(r, csr=replace(r.csr, **kw))


def with_history(r: IssuanceRequest, **kw: object) -> IssuanceRequest:
    return replace(r, history=replace(r.history, **kw))


def refusal_code(policy: Policy, r: IssuanceRequest) -> str:
    with pytest.raises(Refusal) as info:
        policy(r)
    return info.value.code


# ------------------------------------------------------------------ the baseline
@pytest.mark.parametrize("policy", ISSUANCE_POLICIES, ids=lambda p: p.__name__)
def test_every_policy_allows_the_baseline_request(policy: Policy) -> None:
    assert policy(allowed_request()) is None


def test_authorize_issuance_allows_the_baseline_request() -> None:
    assert authorize_issuance(allowed_request()) is None


# ------------------------------------------------------------------ fixture
def test_revoked_fixture_is_refused_as_fixture_revoked() -> None:
    r = with_fixture(allowed_request(), revoked=True)
    assert refusal_code(fixture_active, r) == "fixture_revoked"


def test_fixture_of_another_site_is_refused_as_wrong_site() -> None:
    r = with_fixture(allowed_request(), site_id="cm-b")
    assert refusal_code(fixture_at_order_site, r) == "wrong_site"


def test_wrong_site_refusal_names_both_sites() -> None:
    r = with_fixture(allowed_request(), site_id="cm-b")
    with pytest.raises(Refusal) as info:
        fixture_at_order_site(r)
    assert "cm-b" in info.value.message
    assert "cm-a" in info.value.message
    assert info.value.status == 403


# ------------------------------------------------------------------ order
@pytest.mark.parametrize("state", [OrderState.SUSPENDED, OrderState.CLOSED])
def test_order_not_active_is_refused_as_order_inactive(state: OrderState) -> None:
    r = with_order(allowed_request(), state=state)
    assert refusal_code(order_active, r) == "order_inactive"


def test_order_before_its_window_is_refused_as_order_not_yet_valid() -> None:
    r = with_order(allowed_request(), valid_from=NOW + timedelta(seconds=1))
    assert refusal_code(order_in_window, r) == "order_not_yet_valid"


def test_order_is_valid_from_the_first_instant_of_its_window() -> None:
    order_in_window(with_order(allowed_request(), valid_from=NOW))


def test_order_at_its_end_instant_is_refused_as_order_expired() -> None:
    r = with_order(allowed_request(), valid_until=NOW)
    assert refusal_code(order_in_window, r) == "order_expired"


def test_order_after_its_window_is_refused_as_order_expired() -> None:
    r = with_order(allowed_request(), valid_until=NOW - timedelta(days=1))
    assert refusal_code(order_in_window, r) == "order_expired"


def test_order_without_end_never_expires() -> None:
    r = replace(with_order(allowed_request(), valid_until=None), now=datetime(9999, 12, 31, tzinfo=UTC))
    order_in_window(r)


def test_window_is_decided_by_the_injected_clock() -> None:
    r = allowed_request()
    order_in_window(r)
    assert refusal_code(order_in_window, replace(r, now=NOW + timedelta(days=31))) == "order_expired"
    assert refusal_code(order_in_window, replace(r, now=NOW - timedelta(days=2))) == "order_not_yet_valid"


# ------------------------------------------------------------------ CSR
def test_key_type_outside_the_profile_is_refused_as_key_type_not_allowed() -> None:
    r = with_csr(allowed_request(), key_type=KeyType.ED25519)
    assert refusal_code(key_type_allowed, r) == "key_type_not_allowed"


def test_any_key_type_of_the_profile_is_allowed() -> None:
    r = replace(allowed_request(), allowed_key_types=(KeyType.EC_P384, KeyType.ED25519))
    key_type_allowed(with_csr(r, key_type=KeyType.ED25519))
    key_type_allowed(with_csr(r, key_type=KeyType.EC_P384))
    assert refusal_code(key_type_allowed, with_csr(r, key_type=KeyType.EC_P256)) == "key_type_not_allowed"


def test_csr_naming_another_serial_is_refused_as_serial_mismatch() -> None:
    r = with_csr(allowed_request(), subject_serial="SN0000002")
    assert refusal_code(csr_names_serial, r) == "serial_mismatch"


def test_serial_comparison_is_exact_not_case_folded() -> None:
    r = with_csr(allowed_request(), subject_serial="sn0000001")
    assert refusal_code(csr_names_serial, r) == "serial_mismatch"


# ------------------------------------------------------------------ unit history
def test_serial_provisioned_with_another_key_is_refused_as_serial_has_other_key() -> None:
    r = with_history(allowed_request(), serial_key_fingerprint=OTHER_FP)
    assert refusal_code(serial_keeps_its_key, r) == "serial_has_other_key"


def test_serial_presenting_its_own_key_again_is_allowed() -> None:
    serial_keeps_its_key(with_history(allowed_request(), serial_key_fingerprint=KEY_FP))


def test_key_owned_by_another_serial_is_refused_as_key_reused() -> None:
    r = with_history(allowed_request(), key_owner_serial="SN0000099")
    assert refusal_code(key_unseen, r) == "key_reused"


def test_key_owned_by_the_same_serial_is_not_a_clone() -> None:
    key_unseen(with_history(allowed_request(), key_owner_serial="SN0000001"))


def test_serial_without_test_record_is_refused_as_test_missing() -> None:
    r = with_history(allowed_request(), latest_test=None)
    assert refusal_code(passed_test, r) == "test_missing"


@pytest.mark.parametrize("outcome", [o for o in TestOutcome if o is not TestOutcome.PASS])
def test_latest_test_not_passed_is_refused_as_test_failed(outcome: TestOutcome) -> None:
    r = with_history(allowed_request(), latest_test=outcome)
    assert refusal_code(passed_test, r) == "test_failed"


# ------------------------------------------------------------------ quota
def test_order_with_quota_used_up_is_refused_as_quota_exhausted() -> None:
    r = with_order(allowed_request(), quota=10, used=10)
    assert refusal_code(quota_left, r) == "quota_exhausted"


def test_last_unit_of_the_quota_is_allowed() -> None:
    quota_left(with_order(allowed_request(), quota=10, used=9))


def test_order_with_zero_quota_is_refused_as_quota_exhausted() -> None:
    r = with_order(allowed_request(), quota=0, used=0)
    assert refusal_code(quota_left, r) == "quota_exhausted"


# ------------------------------------------------------------------ key attestation
def with_attestation(
    policy: AttestationPolicy, *, verified: bool = False, failure: Refusal | None = None
) -> IssuanceRequest:
    return replace(allowed_request(), attestation=AttestationFacts(policy, verified, failure))


def test_attestation_off_ignores_even_a_failed_attestation() -> None:
    key_attested(with_attestation(AttestationPolicy.OFF, failure=Refusal("attestation_invalid", "bad")))


def test_attestation_required_and_absent_is_refused_as_attestation_missing() -> None:
    assert refusal_code(key_attested, with_attestation(AttestationPolicy.REQUIRED)) == "attestation_missing"


def test_attestation_optional_and_absent_is_allowed() -> None:
    key_attested(with_attestation(AttestationPolicy.OPTIONAL))


@pytest.mark.parametrize("policy", [AttestationPolicy.OPTIONAL, AttestationPolicy.REQUIRED])
@pytest.mark.parametrize("code", ["attestation_invalid", "attestation_untrusted"])
def test_a_failed_attestation_is_refused_with_its_code_unless_the_policy_is_off(
    policy: AttestationPolicy, code: str
) -> None:
    assert refusal_code(key_attested, with_attestation(policy, failure=Refusal(code, "why"))) == code


def test_a_verified_attestation_satisfies_a_required_policy() -> None:
    key_attested(with_attestation(AttestationPolicy.REQUIRED, verified=True))


# ------------------------------------------------------------------ rules that lived in the service (issue 24)
def test_an_order_that_names_nothing_is_refused_as_order_not_found() -> None:
    assert order_found("po-1", "the row") == "the row"
    with pytest.raises(Refusal) as info:
        order_found("po-404", None)
    assert (info.value.code, info.value.message) == ("order_not_found", "no order 'po-404'")


def test_a_revoked_fixture_is_refused_whatever_it_asks() -> None:
    active_fixture(FixtureFacts("fx-1", "cm-a", revoked=False))
    with pytest.raises(Refusal) as info:
        active_fixture(FixtureFacts("fx-1", "cm-a", revoked=True))
    assert (info.value.code, info.value.message) == ("fixture_revoked", "fixture fx-1 has been revoked")


def test_a_revoked_unit_is_refused_as_unit_revoked_and_says_why() -> None:
    r = with_history(allowed_request(), serial_revoked=True, serial_revocation_reason="keyCompromise")
    with pytest.raises(Refusal) as info:
        serial_not_revoked(r)
    assert info.value.code == "unit_revoked"
    assert info.value.message == "unit SN0000001 was revoked (keyCompromise); it stays revoked"


def test_a_retry_on_another_order_is_refused_as_serial_has_other_key() -> None:
    retry_on_its_order(with_history(allowed_request(), serial_order_id="po-1"))
    r = with_history(allowed_request(), serial_order_id="po-0")
    with pytest.raises(Refusal) as info:
        retry_on_its_order(r)
    assert info.value.code == "serial_has_other_key"
    assert info.value.message == "serial SN0000001 was provisioned on order po-0"


@pytest.mark.parametrize(("state", "shown"), [("revoked", "revoked"), ("pending", "pending"), (None, "missing")])
def test_an_issuing_ca_that_cannot_sign_is_refused_as_issuing_ca_revoked(state: str | None, shown: str) -> None:
    r = replace(allowed_request(), issuing_ca=IssuingCaFacts("issuing", state))
    with pytest.raises(Refusal) as info:
        order_ca_can_sign(r)
    assert info.value.code == "issuing_ca_revoked"
    assert info.value.message == f"order po-1's issuing CA issuing is {shown}"


def test_a_retired_issuing_ca_still_signs() -> None:
    order_ca_can_sign(replace(allowed_request(), issuing_ca=IssuingCaFacts("issuing", "retired")))


def under_pai(pid: int | None, key_type: KeyType = KeyType.EC_P256) -> IssuanceRequest:
    r = with_csr(allowed_request(), key_type=key_type)
    return replace(r, issuing_ca=IssuingCaFacts("pai-bulb", "active", MatterPai(pid)))


def test_a_matter_pai_without_a_product_id_can_issue_no_dac() -> None:
    matter_dac_possible(under_pai(0x8001))
    with pytest.raises(Refusal) as info:
        matter_dac_possible(under_pai(None))
    assert info.value.code == "key_type_not_allowed"
    assert info.value.message == "the Matter PAI pai-bulb names no product ID for the DAC"


@pytest.mark.parametrize("key_type", [KeyType.EC_P384, KeyType.ED25519])
def test_a_dac_needs_a_p256_key(key_type: KeyType) -> None:
    with pytest.raises(Refusal) as info:
        matter_dac_possible(under_pai(0x8001, key_type))
    assert info.value.code == "key_type_not_allowed"
    assert info.value.message == "a Matter DAC cannot be issued: the DAC public key must be ECDSA on P-256 (6.1)"


def test_an_idevid_issuer_takes_any_key_the_product_allows() -> None:
    matter_dac_possible(with_csr(allowed_request(), key_type=KeyType.ED25519))


def test_what_the_signer_refuses_of_a_dac_is_refused_as_key_type_not_allowed() -> None:
    refusal = dac_refused("a DAC issued at 2030-06-01T12:00:00Z falls outside its issuer's validity")
    assert refusal.code == "key_type_not_allowed" and refusal.message.startswith("a Matter DAC cannot be issued: ")


# ------------------------------------------------------------------ retries
def retry() -> IssuanceRequest:
    """The unit asks again with the key it was issued with, on its order."""
    return with_history(
        allowed_request(), serial_key_fingerprint=KEY_FP, key_owner_serial="SN0000001", serial_order_id="po-1"
    )


def test_a_retry_is_replayed_even_when_the_order_is_spent_or_closed() -> None:
    r = with_order(retry(), used=10, state=OrderState.CLOSED)
    assert decide_issuance(r) is Decision.REPLAY
    assert decide_issuance(allowed_request()) is Decision.ISSUE


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda r: with_fixture(r, revoked=True), "fixture_revoked"),
        (lambda r: with_fixture(r, site_id="cm-b"), "wrong_site"),
        (lambda r: with_history(r, serial_revoked=True), "unit_revoked"),
        (lambda r: with_history(r, serial_order_id="po-0"), "serial_has_other_key"),
    ],
)
def test_a_retry_is_refused_by_the_retry_policies_in_order(change: Any, code: str) -> None:
    with pytest.raises(Refusal) as info:
        decide_issuance(change(retry()))
    assert info.value.code == code
    assert [p.__name__ for p in RETRY_POLICIES] == [
        "fixture_active",
        "fixture_at_order_site",
        "serial_not_revoked",
        "retry_on_its_order",
    ]


def test_a_revoked_unit_with_a_new_key_is_refused_as_unit_revoked_before_the_order_speaks() -> None:
    r = with_history(with_order(allowed_request(), state=OrderState.CLOSED), serial_revoked=True)
    with pytest.raises(Refusal) as info:
        decide_issuance(r)
    assert info.value.code == "unit_revoked"


# ------------------------------------------------------------------ a site agent's units coming home
def synced_code(serial: str, key: str, history: UnitHistory) -> str | None:
    try:
        synced_unit_unseen(serial, key, history)
    except Refusal as clone:
        return clone.code
    return None


def test_a_synced_unit_is_checked_by_the_issuance_clone_rules() -> None:
    unseen = UnitHistory(None, None, None)
    assert synced_code("SN1", KEY_FP, unseen) is None
    assert synced_code("SN1", KEY_FP, UnitHistory(None, None, "SN2")) == "key_reused"
    assert synced_code("SN1", KEY_FP, UnitHistory(None, OTHER_FP, None)) == "serial_has_other_key"


def test_a_synced_unit_the_server_already_holds_with_its_key_is_a_clone() -> None:
    assert synced_code("SN1", KEY_FP, UnitHistory(None, KEY_FP, "SN1")) == "key_reused"


def test_a_synced_unit_is_judged_on_its_key_before_its_serial() -> None:
    assert synced_code("SN1", KEY_FP, UnitHistory(None, OTHER_FP, "SN2")) == "key_reused"


# ------------------------------------------------------------------ codes and order
def test_every_refusal_code_used_by_a_policy_has_an_http_status() -> None:
    failing = everything_failing()
    seen = set()
    for policy in ISSUANCE_POLICIES:
        seen.add(refusal_code(policy, failing))
    assert seen <= set(REFUSAL_STATUS)
    # key_type_not_allowed twice: the product's key types, and a Matter PAI that names no product; and
    # quota_exhausted twice: the order's units, and its units' identities (identities_left).
    assert len(seen) == len(ISSUANCE_POLICIES) - 2


def everything_failing() -> IssuanceRequest:
    """A request that every policy refuses."""
    r = allowed_request()
    r = with_fixture(r, revoked=True, site_id="cm-b")
    r = with_order(r, state=OrderState.SUSPENDED, valid_from=NOW + timedelta(days=1), used=10)
    r = with_csr(r, key_type=KeyType.ED25519, subject_serial="SN0000002")
    r = replace(r, attestation=AttestationFacts(AttestationPolicy.REQUIRED))
    r = replace(r, issuing_ca=IssuingCaFacts("pai", "revoked", MatterPai(None, 0xFFF1)))
    r = replace(
        r,
        identity=IdentityFacts(
            serials_required=True, draws=True, order_allocated=10, exhausted="MAC block", matter_ids=(0xFFF2, 0x8001)
        ),
    )
    return with_history(
        r, latest_test=TestOutcome.FAIL, serial_key_fingerprint=OTHER_FP, key_owner_serial="SN9", serial_revoked=True
    )


# Repair applied in this order, each one lets the next check speak.
REPAIRS = [
    ("fixture_revoked", lambda r: with_fixture(r, revoked=False)),
    ("wrong_site", lambda r: with_fixture(r, site_id="cm-a")),
    ("unit_revoked", lambda r: with_history(r, serial_revoked=False)),
    ("order_inactive", lambda r: with_order(r, state=OrderState.ACTIVE)),
    ("order_not_yet_valid", lambda r: with_order(r, valid_from=NOW - timedelta(days=1))),
    ("key_type_not_allowed", lambda r: with_csr(r, key_type=KeyType.EC_P256)),
    ("serial_mismatch", lambda r: with_csr(r, subject_serial="SN0000001")),
    ("serial_not_allocated", lambda r: replace(r, identity=replace(r.identity, allocated_order_id="po-1"))),
    ("serial_has_other_key", lambda r: with_history(r, serial_key_fingerprint=None)),
    ("key_reused", lambda r: with_history(r, key_owner_serial=None)),
    ("attestation_missing", lambda r: replace(r, attestation=ATTESTATION_OFF)),
    ("test_failed", lambda r: with_history(r, latest_test=TestOutcome.PASS)),
    ("quota_exhausted", lambda r: with_order(r, used=0)),
    ("quota_exhausted", lambda r: replace(r, identity=replace(r.identity, order_allocated=0))),
    ("identity_pool_exhausted", lambda r: replace(r, identity=replace(r.identity, exhausted=None))),
    ("issuing_ca_revoked", lambda r: replace(r, issuing_ca=replace(r.issuing_ca, state="retired"))),
    (
        "key_type_not_allowed",
        lambda r: replace(r, issuing_ca=IssuingCaFacts("pai", "active", MatterPai(0x8001, 0xFFF1))),
    ),
    ("matter_ids_mismatch", lambda r: replace(r, identity=replace(r.identity, matter_ids=(0xFFF1, 0x8001)))),
]


def test_first_failing_check_names_the_refusal_in_the_documented_order() -> None:
    r = everything_failing()
    seen = []
    for expected, repair in REPAIRS:
        with pytest.raises(Refusal) as info:
            authorize_issuance(r)
        seen.append(info.value.code)
        assert info.value.code == expected, seen
        r = repair(r)
    authorize_issuance(r)
    assert seen == [code for code, _ in REPAIRS]


def test_fixture_checks_come_before_anything_about_the_order_or_unit() -> None:
    # A revoked fixture learns nothing about the order (not even that it is exhausted).
    r = with_order(with_fixture(allowed_request(), revoked=True), used=10, state=OrderState.CLOSED)
    with pytest.raises(Refusal) as info:
        authorize_issuance(r)
    assert info.value.code == "fixture_revoked"


def test_quota_is_the_last_check_so_refused_units_never_look_like_quota_pressure() -> None:
    r = with_history(with_order(allowed_request(), used=10), latest_test=None)
    with pytest.raises(Refusal) as info:
        authorize_issuance(r)
    assert info.value.code == "test_missing"


def test_authorize_issuance_runs_only_the_given_policies() -> None:
    r = everything_failing()
    authorize_issuance(r, policies=())
    with pytest.raises(Refusal) as info:
        authorize_issuance(r, policies=(quota_left, fixture_active))
    assert info.value.code == "quota_exhausted"


def test_authorize_issuance_stops_at_the_first_refusal() -> None:
    called: list[str] = []

    def spy(r: IssuanceRequest) -> None:
        called.append("spy")

    with pytest.raises(Refusal):
        authorize_issuance(with_fixture(allowed_request(), revoked=True), policies=(fixture_active, spy))
    assert called == []
    authorize_issuance(allowed_request(), policies=(fixture_active, spy))
    assert called == ["spy"]


# ------------------------------------------------------------------ re-enrolment
def allowed_renewal() -> ReenrolmentRequest:
    """A renewal every re-enrolment policy allows."""
    return ReenrolmentRequest(
        serial="SN0000001",
        revoked=False,
        csr=CsrFacts(subject_serial="SN0000001", key_type=KeyType.EC_P256, key_fingerprint=OTHER_FP),
        allowed_key_types=(KeyType.EC_P256,),
        new_key_owner_serial=None,
        issuing_ca="issuing",
        issuing_ca_usable=True,
    )


def renewal_refusal(policy: ReenrolmentPolicy, r: ReenrolmentRequest) -> str:
    with pytest.raises(Refusal) as info:
        policy(r)
    return info.value.code


@pytest.mark.parametrize("policy", REENROLMENT_POLICIES, ids=lambda p: p.__name__)
def test_every_reenrolment_policy_allows_the_baseline_renewal(policy: ReenrolmentPolicy) -> None:
    assert policy(allowed_renewal()) is None


def test_revoked_unit_cannot_renew() -> None:
    assert renewal_refusal(unit_not_revoked, replace(allowed_renewal(), revoked=True)) == "unit_revoked"


def test_renewal_csr_naming_another_serial_is_refused_as_serial_mismatch() -> None:
    r = replace(allowed_renewal(), csr=replace(allowed_renewal().csr, subject_serial="SN0000002"))
    assert renewal_refusal(csr_names_the_unit, r) == "serial_mismatch"


def test_renewal_with_a_key_type_the_product_no_longer_allows_is_refused() -> None:
    r = replace(allowed_renewal(), allowed_key_types=(KeyType.EC_P384,))
    assert renewal_refusal(key_type_still_allowed, r) == "key_type_not_allowed"


def test_renewal_onto_a_key_another_unit_holds_is_refused_as_key_reused() -> None:
    r = replace(allowed_renewal(), new_key_owner_serial="SN0000099")
    assert renewal_refusal(new_key_unseen, r) == "key_reused"


def test_renewal_onto_a_new_key_is_refused_when_the_product_requires_attestation() -> None:
    r = replace(allowed_renewal(), new_key_unattested=True)
    assert renewal_refusal(new_key_attested, r) == "attestation_missing"


def test_renewal_under_a_ca_that_cannot_sign_is_refused_as_issuing_ca_revoked() -> None:
    r = replace(allowed_renewal(), issuing_ca_usable=False)
    assert renewal_refusal(issuing_ca_can_sign, r) == "issuing_ca_revoked"


def test_renewal_under_a_matter_pai_follows_the_dac_rules() -> None:
    r = replace(allowed_renewal(), matter_pai=MatterPai(0x8001))
    matter_dac_still_possible(r)
    assert renewal_refusal(matter_dac_still_possible, replace(r, matter_pai=MatterPai(None))) == "key_type_not_allowed"
    p384 = replace(r, csr=replace(r.csr, key_type=KeyType.EC_P384))
    assert renewal_refusal(matter_dac_still_possible, p384) == "key_type_not_allowed"


def test_reenrolment_refusals_come_in_the_documented_order() -> None:
    r = replace(
        allowed_renewal(),
        revoked=True,
        csr=CsrFacts(subject_serial="SN0000002", key_type=KeyType.ED25519, key_fingerprint=OTHER_FP),
        new_key_owner_serial="SN9",
        issuing_ca_usable=False,
        new_key_unattested=True,
    )
    repairs = [
        ("unit_revoked", lambda r: replace(r, revoked=False)),
        ("serial_mismatch", lambda r: replace(r, csr=replace(r.csr, subject_serial="SN0000001"))),
        ("key_type_not_allowed", lambda r: replace(r, csr=replace(r.csr, key_type=KeyType.EC_P256))),
        ("key_reused", lambda r: replace(r, new_key_owner_serial=None)),
        ("attestation_missing", lambda r: replace(r, new_key_unattested=False)),
        ("issuing_ca_revoked", lambda r: replace(r, issuing_ca_usable=True)),
    ]
    for expected, repair in repairs:
        with pytest.raises(Refusal) as info:
            authorize_reenrolment(r)
        assert info.value.code == expected
        r = repair(r)
    authorize_reenrolment(r)
    assert {code for code, _ in repairs} <= set(REFUSAL_STATUS)
