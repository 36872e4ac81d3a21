from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabguard.service.instance import Instance
from tests.support import PASSPHRASE, World, create_pg_database, drop_pg_database, new_instance, pg_admin_url

os.environ["FABGUARD_KEY_PASSPHRASE"] = PASSPHRASE
os.environ.pop("FABGUARD_KEY_PASSPHRASE_FILE", None)
os.environ.pop("FABGUARD_DATABASE_URL", None)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for the embedded SQLite default, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    if not pg_admin_url():
        pytest.skip("FABGUARD_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    """An embedded (SQLite) instance."""
    inst = new_instance(tmp_path / "home")
    yield inst
    inst.close()


@pytest.fixture
def any_instance(tmp_path: Path, database_url: str | None) -> Iterator[Instance]:
    """An instance on each database engine in turn."""
    inst = new_instance(tmp_path / "home", database_url)
    yield inst
    inst.close()


@pytest.fixture
def world(instance: Instance, tmp_path: Path) -> Iterator[World]:
    w = World.start(instance, tmp_path)
    yield w
    w.stop()


@pytest.fixture
def any_world(any_instance: Instance, tmp_path: Path) -> Iterator[World]:
    w = World.start(any_instance, tmp_path)
    yield w
    w.stop()
