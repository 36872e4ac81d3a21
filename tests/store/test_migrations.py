"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fabguard.service.instance import Instance
from fabguard.store.models import Base


def test_migrated_schema_matches_the_models(any_instance: Instance) -> None:
    with any_instance.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_quota_check_constraint_holds_even_against_a_direct_update(any_instance: Instance) -> None:
    import pytest
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from fabguard.service import catalog, orders
    from fabguard.store.models import Order

    catalog.create_product(any_instance, product_id="p", name="P", actor="t")
    catalog.create_site(any_instance, site_id="s", name="S", actor="t")
    oid = orders.create_order(any_instance, product_id="p", site_id="s", quota=1, actor="t").id
    with pytest.raises(IntegrityError), any_instance.db.transaction() as s:
        s.execute(update(Order).where(Order.id == oid).values(used=2))
