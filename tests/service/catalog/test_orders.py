"""Orders: dual control on quota raises, states, windows, and the events each change leaves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fabguard.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fabguard.domain.values import OrderId, OrderState, ProductId, SiteId
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core import events
from fabguard.service.core.instance import Instance


@pytest.fixture
def order(any_instance: Instance) -> str:
    product_catalog.create_product(any_instance, product_id=ProductId("sensor"), name="Sensor", actor="alice")
    product_catalog.create_site(any_instance, site_id=SiteId("cm-a"), name="CM A", actor="alice")
    return orders.create_order(
        any_instance, product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=100, actor="alice"
    ).id


def test_raise_needs_a_different_approver_and_leaves_events(any_instance: Instance, order: str) -> None:
    change = orders.request_quota_change(any_instance, order, 150, reason="rework", actor="alice")
    assert change["state"] == "pending" and orders.get_order(any_instance, order).quota == 100

    with pytest.raises(Forbidden) as same:
        orders.decide_quota_change(any_instance, int(change["id"]), approve=True, actor="alice")  # type: ignore[call-overload]
    assert same.value.code == "same_approver"
    orders.decide_quota_change(any_instance, int(change["id"]), approve=True, actor="bob")  # type: ignore[call-overload]

    assert orders.get_order(any_instance, order).quota == 150
    kinds = [e["kind"] for e in events.list_events(any_instance, order_id=order)]
    assert kinds == ["order.created", "order.quota_change_requested", "order.quota_changed"]
    with pytest.raises(Conflict):
        orders.decide_quota_change(any_instance, int(change["id"]), approve=True, actor="carol")  # type: ignore[call-overload]


def test_rejected_raise_changes_nothing(any_instance: Instance, order: str) -> None:
    change = orders.request_quota_change(any_instance, order, 1000, reason="more", actor="alice")
    orders.decide_quota_change(any_instance, int(change["id"]), approve=False, actor="bob")  # type: ignore[call-overload]
    assert orders.get_order(any_instance, order).quota == 100


def test_quota_cannot_go_below_what_was_used_or_negative(any_instance: Instance, order: str) -> None:
    with pytest.raises(InvalidRequest):
        orders.request_quota_change(any_instance, order, -5, reason="x", actor="alice")
    with pytest.raises(InvalidRequest):
        orders.request_quota_change(any_instance, order, 100, reason="same", actor="alice")
    with pytest.raises(NotFound):
        orders.request_quota_change(any_instance, "po-nope", 5, reason="x", actor="alice")


def test_closed_order_cannot_be_reopened(any_instance: Instance, order: str) -> None:
    orders.set_order_state(any_instance, order, OrderState("closed"), actor="alice")
    with pytest.raises(Conflict):
        orders.set_order_state(any_instance, order, OrderState("active"), actor="alice")
    with pytest.raises(InvalidRequest):
        OrderState.parse("paused")


def test_window_must_be_ordered_and_zoned(any_instance: Instance, order: str) -> None:
    now = any_instance.clock()
    with pytest.raises(InvalidRequest):
        orders.create_order(
            any_instance,
            product_id=ProductId("sensor"),
            site_id=SiteId("cm-a"),
            quota=1,
            actor="a",
            valid_from=now,
            valid_until=now - timedelta(days=1),
        )
    with pytest.raises(InvalidRequest):
        orders.create_order(
            any_instance,
            product_id=ProductId("sensor"),
            site_id=SiteId("cm-a"),
            quota=1,
            actor="a",
            valid_from=now.replace(tzinfo=None),
        )
    with pytest.raises(Conflict):
        orders.create_order(
            any_instance,
            order_id=OrderId(order),
            product_id=ProductId("sensor"),
            site_id=SiteId("cm-a"),
            quota=1,
            actor="a",
        )
