"""An instance: one data directory holding configuration, encrypted keys, certificates and (by default) the database.

``Instance`` only puts the parts together: its configuration (``service.config``), its keys
(``pki.keystore.KeyStore``), its CAs (``service.ca_registry.CaRegistry``) and its database.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fabguard.analytics.fold import Memory
from fabguard.pki.ocsp import OcspState
from fabguard.service.core.ca_registry import CaRegistry
from fabguard.service.core.config import DATABASE_ENV, InstanceConfig, load_config
from fabguard.service.core.seeding import seed_registry
from fabguard.store.db import Database, sqlite_url
from fabguard.store.migrate import upgrade

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FirmwareKeys:
    """The firmware keys' state in this process: one lock for making them, the KEK once opened."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    kek: bytes | None = None


@dataclass
class ProjectorState:
    """The analytics projector's state in this process: one projector at a time, and the detector state at
    the cursor it last moved (``None`` until loaded, or after another process moved the cursor)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    memory: Memory | None = None


class Instance:
    """An opened instance. Keys are decrypted on first use and only held in memory, as is what this process
    keeps beside the database (``firmware_keys``, ``projector``): state belongs to the instance that owns it,
    never to a module."""

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
        self.cas = CaRegistry(
            self.db, self.keys, home / "ca", config.crl_base_url, config.ca_issuers_base_url, config.ocsp_url
        )
        self.firmware_keys = FirmwareKeys()
        self.projector = ProjectorState()
        self.ocsp = OcspState()  # this process's signed OCSP responses and loaded responders
        # The name of this server process's liveness lease while ``runtime.liveness`` keeps it (None
        # elsewhere): a provisioning batch's idempotency key records it as the key's holder.
        self.process_lease: str | None = None

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
