"""Migration 0017 gives every existing token a person: one per distinct token name (the rule dual control
used until then), and pending requests keep working, judged by people from then on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import insert, select

from fabguard.domain.errors import Forbidden
from fabguard.domain.values import OrderId, ProductId, Role, SiteId
from fabguard.service.access import people, tokens
from fabguard.service.approvals import requests
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.approval_models import ApprovalRequest
from fabguard.store.migrate import alembic_config
from fabguard.store.models import ApiToken, QuotaChange
from fabguard.store.people_models import Person


def _migrate(inst: Instance, revision: str, *, down: bool = False) -> None:
    with inst.db.engine.begin() as conn:
        cfg = alembic_config(inst.db)
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _old_token(conn: object, token_id: str, name: str, role: str, **kw: object) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=len(token_id) + ord(token_id[-1]))
    row = {"id": token_id, "name": name, "role": role, "token_hash": token_id * 4, "created_at": at, **kw}
    conn.execute(insert(ApiToken.__table__).values(row))  # type: ignore[attr-defined]


def test_each_token_name_becomes_one_person_and_pending_requests_keep_their_judgement(any_instance: Instance) -> None:
    inst = any_instance
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    orders.create_order(
        inst, order_id=OrderId("po-m"), product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=3, actor="t"
    )
    _migrate(inst, "0016", down=True)
    later = datetime.now(UTC) + timedelta(days=30)
    with inst.db.engine.begin() as conn:
        # ada: an admin token and an approver token under one name; alex: an approver; line: an operator.
        _old_token(conn, "aaaaaaaaaaaaaaa1", "ada", "admin", expires_at=later)
        _old_token(conn, "aaaaaaaaaaaaaaa2", "ada", "approver", expires_at=later)
        _old_token(conn, "bbbbbbbbbbbbbbb1", "alex", "approver")
        _old_token(conn, "ccccccccccccccc1", "line", "operator", site_id="cm-a")
        _old_token(conn, "ddddddddddddddd1", "gone", "admin", revoked_at=datetime(2026, 2, 1, tzinfo=UTC))
        now = datetime.now(UTC)
        conn.execute(
            insert(ApprovalRequest.__table__).values(  # type: ignore[arg-type]
                id=7, kind="token.admin", target="root-2", state="pending", requested_at=now,
                expires_at=now + timedelta(hours=70), requested_by="ada (aaaaaaaaaaaaaaa1)", requester_name="ada",
                requester_token="aaaaaaaaaaaaaaa1", secret_sha256="e" * 64,
                parameters=json.dumps({"name": "root-2", "role": "admin", "site_id": None, "lifetime_seconds": 3600}),
            )
        )  # fmt: skip
        conn.execute(
            insert(QuotaChange.__table__).values(  # type: ignore[arg-type]
                id=5, order_id="po-m", old_quota=3, new_quota=9, state="pending", reason="more",
                requested_by="ada (aaaaaaaaaaaaaaa1)", requested_at=now,
            )
        )  # fmt: skip
    _migrate(inst, "head")

    with inst.db.read() as s:
        found = {p.name: p for p in s.execute(select(Person)).scalars()}
        person_of = {t.id: t.person_id for t in s.execute(select(ApiToken)).scalars()}
        asked = s.get(ApprovalRequest, 7)
        raised = s.get(QuotaChange, 5)
        assert asked is not None and raised is not None
        assert asked.requester_person == raised.requester_person == found["ada"].id
    assert {"ada", "alex", "line", "gone"} <= set(found)
    assert person_of["aaaaaaaaaaaaaaa1"] == person_of["aaaaaaaaaaaaaaa2"] == found["ada"].id
    assert people.roles_of(found["ada"]) == {Role.ADMIN, Role.APPROVER}
    assert (people.roles_of(found["line"]), found["line"].site_id) == ({Role.OPERATOR}, "cm-a")
    assert people.roles_of(found["gone"]) == frozenset()  # only a revoked token: no role left
    assert found["gone"].approving_since is not None and found["alex"].approving_since is not None
    with inst.db.read() as s:
        assert people.dual_control_in_force(s)

    # The pending requests: ada's other token is ada (as before), alex is someone else (as before).
    ada_too = tokens.Principal("aaaaaaaaaaaaaaa2", "ada", Role.APPROVER, person_id=found["ada"].id)
    alex = tokens.Principal("bbbbbbbbbbbbbbb1", "alex", Role.APPROVER, person_id=found["alex"].id)
    with pytest.raises(Forbidden) as own:
        requests.decide(inst, 7, approve=True, by=ada_too)
    assert own.value.code == "same_person"
    done = requests.decide(inst, 7, approve=True, by=alex)
    # A request made before people names none: the token is the person's named as it, made now.
    assert done.result is not None and done.result["person_id"] == people.get_person(inst, "root-2").id
    assert people.get_person(inst, "root-2").roles == (Role.ADMIN,)
    with pytest.raises(Forbidden) as own_raise:
        orders.decide_quota_change(inst, 5, approve=True, actor=ada_too.actor)
    assert own_raise.value.code == "same_person"
    assert orders.decide_quota_change(inst, 5, approve=True, actor=alex.actor)["state"] == "applied"
