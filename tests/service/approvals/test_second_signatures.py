"""Quota raises and firmware approvals keep their own routes but follow the dual-control rules of
service/approvals/requests.py: another token of the requester's person (whatever its name) is the same person,
a quota raise expires after ``approval_hours``, and each such refusal is an ``approval.refused`` event."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from fabguard.domain.errors import Conflict, Forbidden
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.service.access import people, tokens
from fabguard.service.approvals import person_acts, requests
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.firmware import release_lifecycle
from fabguard.store.models import Event


def _refusals(inst: Instance, key: str) -> list[tuple[str | None, str | None, object]]:
    """Who was refused, why, and which request (the detail's ``key``)."""
    with inst.db.read() as s:
        rows = s.execute(select(Event).where(Event.kind == "approval.refused").order_by(Event.seq)).scalars()
        return [(e.actor, e.code, json.loads(e.detail)[key]) for e in rows]


def _erin(inst: Instance) -> tuple[tokens.Principal, tokens.Principal]:
    """Erin, an engineer and approver, with a token of each role (the second under another name)."""
    spec = people.person_spec("erin", roles=["engineer", "approver"])
    person_acts.add_person(inst, spec, by=requests.Person("test", "test", None))
    erin, _ = tokens.create_token(inst, name="erin", role="engineer", actor="test", person="erin")
    erin_too, _ = tokens.create_token(inst, name="erin's laptop", role="approver", actor="test", person="erin")
    return erin, erin_too


@pytest.fixture
def order(any_instance: Instance) -> str:
    product_catalog.create_product(any_instance, product_id=ProductId("sensor"), name="Sensor", actor="test")
    product_catalog.create_site(any_instance, site_id=SiteId("cm-a"), name="CM A", actor="test")
    orders.create_order(
        any_instance, order_id=OrderId("po-q"), product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=3,
        actor="test",
    )  # fmt: skip
    return "po-q"


def test_a_quota_raise_is_not_approved_by_the_requesters_other_token_nor_after_it_expired(
    any_instance: Instance, order: str
) -> None:
    inst = any_instance
    erin, erin_too = _erin(inst)
    alex, _ = tokens.create_token(inst, name="alex", role="approver", actor="test")
    raise_ = orders.request_quota_change(inst, order, 10, reason="PO amendment", actor=erin.actor)

    with pytest.raises(Forbidden) as own:
        orders.decide_quota_change(inst, int(str(raise_["id"])), approve=True, actor=erin_too.actor)
    assert own.value.code == "same_person"
    real = inst.clock
    inst.clock = lambda: real() + timedelta(hours=inst.limits.approval_hours, seconds=1)
    with pytest.raises(Conflict) as late:
        orders.decide_quota_change(inst, int(str(raise_["id"])), approve=True, actor=alex.actor)
    assert late.value.code == "approval_expired"

    assert orders.get_order(inst, order).quota == 3
    assert _refusals(inst, "quota_change_id") == [
        (erin_too.actor, "same_person", raise_["id"]),
        (alex.actor, "approval_expired", raise_["id"]),
    ]


def test_a_dual_control_release_is_not_approved_by_its_uploaders_other_token(any_instance: Instance) -> None:
    inst = any_instance
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
    erin, erin_too = _erin(inst)
    alex, _ = tokens.create_token(inst, name="alex", role="approver", actor="test")
    release = release_lifecycle.upload_release(
        inst, product_id="sensor", version="1.0.0", image=b"\x00" * 64, dual_control=True, actor=erin.actor
    )

    with pytest.raises(Forbidden) as own:
        release_lifecycle.approve_release(inst, release.id, actor=erin_too.actor)

    assert own.value.code == "same_person"
    assert release_lifecycle.get_release(inst, release.id).state == "uploaded"
    assert _refusals(inst, "release_id") == [(erin_too.actor, "same_person", release.id)]
    assert release_lifecycle.approve_release(inst, release.id, actor=alex.actor).state == "approved"
