"""The migrated template copied for each test (tests/templates.py) gives what running the migrations gives,
and every copy is an instance of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from fabguard.domain.values import SiteId
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.models import CertificateAuthority
from fabguard.store.schema import metadata
from tests import templates
from tests.support import fresh_pg_database, new_instance


def _rows(inst: Instance) -> dict[str, int]:
    with inst.db.read() as s:
        return {t.name: s.execute(select(func.count()).select_from(t)).scalar_one() for t in metadata.sorted_tables}


def _revision(inst: Instance) -> str | None:
    with inst.db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@pytest.fixture
def pair(tmp_path: Path, database_url: str | None) -> Iterator[tuple[Instance, Instance]]:
    """Two instances from the template on the engine under test (the second in a database of its own)."""
    a = new_instance(tmp_path / "a", database_url)
    if database_url is None:
        b = new_instance(tmp_path / "b")
        yield a, b
    else:
        with fresh_pg_database(migrated=True) as url:
            b = new_instance(tmp_path / "b", url)
            yield a, b
    a.close()
    b.close()


def test_copies_of_the_template_are_instances_of_their_own(pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    assert _revision(a) == _revision(b) == templates.migration_head()
    with a.db.read() as s:
        cas_a = {ca.name: ca.certificate_pem for ca in s.execute(select(CertificateAuthority)).scalars()}
    with b.db.read() as s:
        cas_b = {ca.name: ca.certificate_pem for ca in s.execute(select(CertificateAuthority)).scalars()}
    assert set(cas_a) == set(cas_b) == {"root", "issuing", "station"}
    assert all(cas_a[name] != cas_b[name] for name in cas_a)  # each made its own keys and certificates
    assert a.cas.certificate("root") != b.cas.certificate("root")

    product_catalog.create_site(a, site_id=SiteId("only-in-a"), name="A", actor="test")
    assert _rows(a)["sites"] == 1
    assert _rows(b)["sites"] == 0


def test_a_copy_holds_what_running_every_migration_gives(tmp_path: Path, database_url: str | None) -> None:
    copied = new_instance(tmp_path / "copied", database_url)
    try:
        if database_url is None:
            migrated = new_instance(tmp_path / "migrated", from_template=False)
            _compare(copied, migrated)
        else:
            with fresh_pg_database(migrated=False) as url:
                migrated = new_instance(tmp_path / "migrated", url)
                _compare(copied, migrated)
    finally:
        copied.close()


def _compare(copied: Instance, migrated: Instance) -> None:
    try:
        assert _revision(copied) == _revision(migrated) == templates.migration_head()
        assert _rows(copied) == _rows(migrated)
        with copied.db.read() as s1, migrated.db.read() as s2:
            for table in ("counters", "analytics_state"):
                t = metadata.tables[table]
                assert s1.execute(select(t)).all() == s2.execute(select(t)).all()
    finally:
        migrated.close()
