"""API tokens: scoped to a role and (for operators) a site, expiring, revocable; refusals change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fabguard.domain.errors import FabGuardError
from fabguard.domain.values import Role, SiteId
from fabguard.service.access import tokens
from fabguard.service.catalog import product_catalog
from fabguard.service.core import events
from fabguard.service.core.instance import Instance


@pytest.fixture
def inst(any_instance: Instance) -> Instance:
    product_catalog.create_site(any_instance, site_id=SiteId("cm-a"), name="CM A", actor="test")
    return any_instance


def _refused(inst: Instance, code: str, **kw: object) -> FabGuardError:
    before = len(tokens.list_tokens(inst))
    with pytest.raises(FabGuardError) as caught:
        tokens.create_token(inst, name="t", actor="test", **kw)  # type: ignore[arg-type]
    assert caught.value.code == code, caught.value
    assert len(tokens.list_tokens(inst)) == before
    return caught.value


def test_an_operator_token_needs_a_site_and_no_other_role_may_name_one(inst: Instance) -> None:
    assert "must name its site" in _refused(inst, "token_site_invalid", role=Role.OPERATOR).message
    for role in (Role.ADMIN, Role.ENGINEER, Role.APPROVER, Role.AUDITOR):
        _refused(inst, "token_site_invalid", role=role, site_id=SiteId("cm-a"))
    _refused(inst, "site_not_found", role=Role.OPERATOR, site_id=SiteId("cm-zz"))
    made, secret = tokens.create_token(inst, name="line", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="test")
    seen = tokens.authenticate_token(inst, secret)
    assert (seen.role, seen.site_id) == (Role.OPERATOR, "cm-a") == (made.role, made.site_id)
    assert seen.sees_site("cm-a") and not seen.sees_site("cm-b")


def test_a_token_expires_after_90_days_by_default_and_at_most_365(inst: Instance) -> None:
    made, _ = tokens.create_token(inst, name="t", role=Role.AUDITOR, actor="test")
    assert made.expires_at is not None and made.expires_at - inst.clock() <= timedelta(days=90)
    assert made.expires_at - inst.clock() > timedelta(days=90) - timedelta(minutes=5)
    for lifetime in (timedelta(days=366), timedelta(seconds=5), timedelta(days=-1)):
        _refused(inst, "token_expiry_invalid", role=Role.AUDITOR, expires_in=lifetime)
    made, _ = tokens.create_token(inst, name="t", role=Role.AUDITOR, actor="test", expires_in=timedelta(days=365))
    assert made.expires_at is not None


def test_expired_and_revoked_tokens_are_unauthorized_with_a_message_saying_which(inst: Instance) -> None:
    now = inst.clock()
    then = Instance.open(inst.home, clock=lambda: now - timedelta(days=2), migrate=False)
    try:
        lapsed, expired = tokens.create_token(then, name="x", role=Role.ADMIN, actor="t", expires_in=timedelta(days=1))
    finally:
        then.close()
    gone, revoked = tokens.create_token(inst, name="y", role=Role.ADMIN, actor="t")
    tokens.revoke_token(inst, gone.id, actor="t")
    for secret, token_id, word in ((expired, lapsed.id, "expired"), (revoked, gone.id, "revoked")):
        with pytest.raises(FabGuardError) as caught:
            tokens.authenticate_token(inst, secret)
        assert (caught.value.code, caught.value.status) == ("unauthorized", 401)
        assert word in caught.value.message and token_id in caught.value.message
        assert secret not in caught.value.message


def test_only_the_hash_is_stored_and_the_creation_is_an_event_naming_its_scope(inst: Instance) -> None:
    made, secret = tokens.create_token(inst, name="line", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="boss (b1)")
    row = next(t for t in tokens.list_tokens(inst) if t.id == made.id)
    assert row.token_hash == tokens.hash_token(secret) and secret not in repr(vars(row))
    created = [e for e in events.list_events(inst, kind="token.created") if e["detail"]["token_id"] == made.id]
    assert len(created) == 1 and created[0]["actor"] == "boss (b1)"
    assert created[0]["detail"]["site_id"] == "cm-a" and created[0]["detail"]["expires_at"]


def test_revoking_is_safe_to_retry_and_an_unknown_token_is_not_found(inst: Instance) -> None:
    made, _ = tokens.create_token(inst, name="leaver", role=Role.ADMIN, actor="t")
    first = tokens.revoke_token(inst, made.id, actor="t")
    assert first["revoked_at"] is not None
    assert tokens.revoke_token(inst, made.id, actor="another") == first  # the first revocation stands
    assert [e["detail"] for e in events.list_events(inst, kind="token.revoked")] == [{"token_id": made.id}]
    with pytest.raises(FabGuardError) as caught:
        tokens.revoke_token(inst, "tok-nobody", actor="t")
    assert (caught.value.code, caught.value.status) == ("token_not_found", 404)
    assert "tok-nobody" in caught.value.message
    assert len(events.list_events(inst, kind="token.revoked")) == 1
