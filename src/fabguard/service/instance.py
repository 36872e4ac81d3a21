"""An instance: one data directory holding configuration, encrypted keys, certificates and (by default) the database.

``Instance`` only puts the parts together: its configuration (``service.config``), its keys
(``pki.keystore.KeyStore``), its CAs (``service.ca_registry.CaRegistry``) and its database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from fabguard.service.ca_registry import CaRegistry
from fabguard.service.config import DATABASE_ENV, InstanceConfig, load_config
from fabguard.service.seeding import seed_registry
from fabguard.store.db import Database, sqlite_url
from fabguard.store.migrate import upgrade

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Instance:
    """An opened instance. Keys are decrypted on first use and only held in memory."""

    def __init__(
        self,
        home: Path,
        config: InstanceConfig,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock = utcnow,
        database_url: str | None = None,
    ) -> None:
        self.home = home
        self.config = config
        self.limits = config.limits
        self.clock = clock
        env = os.environ if env is None else env
        url = database_url or env.get(DATABASE_ENV) or config.database_url or sqlite_url(home / "fabguard.db")
        self.db = Database(url)
        self.keys = config.key_store(home, env)
        self.cas = CaRegistry(self.db, self.keys, home / "ca", config.crl_base_url, config.ca_issuers_base_url)

    @classmethod
    def open(
        cls,
        home: Path,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock = utcnow,
        database_url: str | None = None,
        migrate: bool = True,
    ) -> Instance:
        """Open the instance in ``home``; with ``migrate``, upgrade its schema and register the CAs ``init`` made."""
        inst = cls(home, load_config(home), env=env, clock=clock, database_url=database_url)
        if migrate:
            upgrade(inst.db)
            seed_registry(inst.db, inst.cas, inst.keys, inst.clock)
        return inst

    def close(self) -> None:
        self.db.dispose()
        self.keys.close()
