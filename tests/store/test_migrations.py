"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from fabguard.domain.values import ProductId, SiteId
from fabguard.service.core.instance import Instance
from fabguard.store.analytics_models import FailureHour, FailureMinute, StatsHour, StatsMinute, YieldHour, YieldMinute
from fabguard.store.migrate import alembic_config
from fabguard.store.schema import metadata

# These tests check the migrations themselves: their instances run every migration (no template copy).
pytestmark = pytest.mark.migrations

HOUR_ROLLUPS = ((StatsMinute, StatsHour), (YieldMinute, YieldHour), (FailureMinute, FailureHour))


def test_migrated_schema_matches_the_models(any_instance: Instance) -> None:
    with any_instance.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_quota_check_constraint_holds_even_against_a_direct_update(any_instance: Instance) -> None:
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from fabguard.service.catalog import orders, product_catalog
    from fabguard.store.models import Order

    product_catalog.create_product(any_instance, product_id=ProductId("p"), name="P", actor="t")
    product_catalog.create_site(any_instance, site_id=SiteId("s"), name="S", actor="t")
    oid = orders.create_order(any_instance, product_id=ProductId("p"), site_id=SiteId("s"), quota=1, actor="t").id
    with pytest.raises(IntegrityError), any_instance.db.transaction() as s:
        s.execute(update(Order).where(Order.id == oid).values(used=2))


def _migrate(inst: Instance, revision: str, *, down: bool = False) -> None:
    with inst.db.engine.begin() as conn:
        cfg = alembic_config(inst.db)
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _minute_rows(rng: random.Random) -> dict[Any, dict[tuple[Any, ...], tuple[int, ...]]]:
    """Minute rollups as a projector leaves them: per model, key (minute first) -> counts."""
    base = 29_000_000  # epoch minutes, in 2025
    minutes = [0, 59, 60, 61, 119, 120, base, base + 59, base + 60, *(base + rng.randrange(5000) for _ in range(60))]
    rows: dict[Any, dict[tuple[Any, ...], tuple[int, ...]]] = {model: {} for model, _ in HOUR_ROLLUPS}
    for m in minutes:
        for site, order, fixture in (("cm-a", "", "f1"), ("cm-a", "po-1", "f1"), ("cm-b", "po-2", "f2")):
            big = rng.choice((1, 7, 2**40))
            rows[StatsMinute][(m, "test.recorded", rng.choice(("PASS", "FAIL")), site, order, fixture)] = (big,)
            rows[StatsMinute][(m, "unit.refused", "quota_exhausted", site, order, fixture)] = (rng.randrange(1, 9),)
            # A unit's move to its order leaves negative and zero counts under order "".
            sign = -1 if order == "" and rng.random() < 0.3 else 1
            rows[YieldMinute][(m, site, order, fixture)] = tuple(sign * rng.randrange(0, 5) for _ in range(5))
            phase, measurement = rng.choice(("power", "radio")), rng.choice(("", "vcc", "rssi"))
            rows[FailureMinute][(m, site, order, fixture, phase, measurement)] = (big,)
    return rows


def test_upgrade_to_0007_fills_the_hour_rollups_from_the_projected_minutes(any_instance: Instance) -> None:
    """A deployment at 0006 has minute rollups projected already: 0007's hour tables start as their sums
    (and its downgrade drops them)."""
    _migrate(any_instance, "0006", down=True)
    names = set(inspect(any_instance.db.engine).get_table_names())
    assert not {hours.__tablename__ for _, hours in HOUR_ROLLUPS} & names
    rows = _minute_rows(random.Random(6))
    with any_instance.db.transaction() as s:
        for model, keyed in rows.items():
            table = model.__table__
            columns = [c.name for c in table.primary_key.columns] + [c.name for c in table.columns if not c.primary_key]
            s.execute(insert(table), [dict(zip(columns, (*k, *v), strict=True)) for k, v in keyed.items()])

    _migrate(any_instance, "head")

    with any_instance.db.read() as s:
        for minutes, hours in HOUR_ROLLUPS:
            want: dict[tuple[Any, ...], tuple[int, ...]] = {}
            for (m, *dims), counts in rows[minutes].items():
                before = want.get((m // 60, *dims), (0,) * len(counts))
                want[(m // 60, *dims)] = tuple(a + b for a, b in zip(before, counts, strict=True))
            table = hours.__table__
            keys = list(table.primary_key.columns)
            counts = [c for c in table.columns if not c.primary_key]
            got = {
                tuple(r[: len(keys)]): tuple(int(n) for n in r[len(keys) :]) for r in s.execute(select(*keys, *counts))
            }
            assert got == want, hours.__tablename__
            assert len(got) < len(rows[minutes])  # minutes did share hours


def test_upgrade_to_0018_binds_stored_test_records_to_their_fixtures_sites(any_instance: Instance) -> None:
    """Records stored before 0018 take their uploading fixture's site; the body's station stays, as declared
    (and the downgrade gives the column its old name back)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    _migrate(any_instance, "0016", down=True)
    with any_instance.db.engine.begin() as conn:
        for site in ("cm-a", "cm-b"):
            conn.execute(text("INSERT INTO sites (id, name, created_at) VALUES (:s, :s, :t)"), {"s": site, "t": now})
            conn.execute(
                text("INSERT INTO fixtures (id, site_id, created_at) VALUES (:f, :s, :t)"),
                {"f": f"fx-{site}", "s": site, "t": now},
            )
        for serial, fixture, station in (("SN1", "fx-cm-a", "st-1"), ("SN1", "fx-cm-b", "fx-cm-a")):
            conn.execute(
                text(
                    "INSERT INTO test_records (serial, fixture_id, station_id, outcome, start_ms, end_ms,"
                    " measurement_count, received_at, record_json) VALUES (:s, :f, :st, 'PASS', 1, 2, 0, :t, '{}')"
                ),
                {"s": serial, "f": fixture, "st": station, "t": now},
            )

    _migrate(any_instance, "head")

    with any_instance.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT fixture_id, site_id, declared_station_id FROM test_records ORDER BY id"))
        assert [tuple(r) for r in rows] == [("fx-cm-a", "cm-a", "st-1"), ("fx-cm-b", "cm-b", "fx-cm-a")]
    _migrate(any_instance, "0016", down=True)
    with any_instance.db.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text("SELECT station_id FROM test_records ORDER BY id"))] == [
            ("st-1",),
            ("fx-cm-a",),
        ]


def test_upgrade_to_0030_counts_each_orders_allocated_identities_once(any_instance: Instance) -> None:
    """Orders allocated identities before 0030 start from what they hold; from then on the order keeps the
    figure (the write path reads it instead of counting the order's identities)."""
    from fabguard.domain.identities.pools import pool_from_json
    from fabguard.domain.issuance import FixtureFacts
    from fabguard.domain.values import FixtureId, OrderId
    from fabguard.service.catalog import fixtures, identity_pools, orders, product_catalog
    from fabguard.service.provisioning.allocation import allocate_unit

    inst = any_instance
    product_catalog.create_product(inst, product_id=ProductId("p"), name="P", actor="t")
    product_catalog.create_site(inst, site_id=SiteId("s"), name="S", actor="t")
    fixtures.create_fixture(inst, fixture_id=FixtureId("fx"), site_id=SiteId("s"), actor="t")
    for order_id in ("po-a", "po-b", "po-c"):
        orders.create_order(
            inst, order_id=OrderId(order_id), product_id=ProductId("p"), site_id=SiteId("s"), quota=9, actor="t"
        )
    identity_pools.set_pools(inst, ProductId("p"), pool_from_json({"serials": {"prefix": "P-", "width": 4}}), actor="t")
    for order_id in ("po-a", "po-a", "po-a", "po-b"):
        allocate_unit(inst, FixtureFacts("fx", "s", False), OrderId(order_id), None)
    _migrate(inst, "0029", down=True)
    _migrate(inst, "head")
    with inst.db.engine.connect() as conn:
        held = conn.execute(text("SELECT id, identities_allocated FROM orders ORDER BY id"))
        assert [tuple(r) for r in held] == [("po-a", 3), ("po-b", 1), ("po-c", 0)]
