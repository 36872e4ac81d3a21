"""All-time figures: orders' quotas and use, the projection's totals, fixtures' last activity.

What ``/metrics`` exposes and the overview's totals; plain tuples, in a stable order.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fabguard.store.analytics_models import FixtureActivity, StatsTotal
from fabguard.store.models import Fixture, Order
from fabguard.store.windows import REFUSAL_KINDS

# An order's quota figures: id, product, site, state, quota, used.
OrderQuota = tuple[str, str, str, str, int, int]


def order_quotas(s: Session) -> list[OrderQuota]:
    return [(o.id, o.product_id, o.site_id, o.state, o.quota, o.used) for o in s.execute(select(Order)).scalars()]


def provisioned_total(s: Session) -> int:
    """Units provisioned on every order."""
    return int(s.execute(select(func.coalesce(func.sum(Order.used), 0))).scalar_one())


def product_orders(s: Session, product_id: str) -> tuple[str, ...]:
    """The ids of the product's orders."""
    return tuple(s.execute(select(Order.id).where(Order.product_id == product_id)).scalars())


def order_exists(s: Session, order_id: str) -> bool:
    return s.get(Order, order_id) is not None


def refusal_totals(s: Session) -> list[tuple[str, str, int]]:
    """Every refusal folded so far, by event kind and reason code ("unknown" without one), sorted."""
    t = StatsTotal.__table__
    return [
        (kind, code or "unknown", int(n))
        for kind, code, n in s.execute(
            select(t.c.kind, t.c.code, func.sum(t.c.n))
            .where(t.c.kind.in_(REFUSAL_KINDS))
            .group_by(t.c.kind, t.c.code)
            .order_by(t.c.kind, t.c.code)
        )
    ]


def outcome_totals(s: Session) -> list[tuple[str, int]]:
    """Every test record folded so far, by outcome, sorted."""
    t = StatsTotal.__table__
    return [
        (outcome, int(n))
        for outcome, n in s.execute(
            select(t.c.code, func.sum(t.c.n)).where(t.c.kind == "test.recorded").group_by(t.c.code).order_by(t.c.code)
        )
    ]


def fixtures_last_seen(s: Session) -> list[tuple[str, str, datetime]]:
    """Fixture, site and last activity of every fixture that has been active."""
    return [
        (fixture_id, site_id, at)
        for fixture_id, site_id, at in s.execute(
            select(Fixture.id, Fixture.site_id, FixtureActivity.last_at).join(
                FixtureActivity, FixtureActivity.fixture_id == Fixture.id
            )
        )
    ]
