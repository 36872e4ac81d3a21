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
from fabguard.domain.errors import SchemaMismatch
from fabguard.pki.ocsp import OcspState
from fabguard.service.core.auth_cache import FixtureIdentity, GenerationCache
from fabguard.service.core.ca_registry import CaRegistry
from fabguard.service.core.config import InstanceConfig, load_config, resolve_database_url
from fabguard.service.core.seeding import seed_registry
from fabguard.store.db import Database
from fabguard.store.migrate import SchemaStatus, schema_status, upgrade

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
        self.db = Database(resolve_database_url(home, config, env, database_url))
        self.keys = config.key_store(home, env)
        self.cas = CaRegistry(
            self.db, self.keys, home / "ca", config.crl_base_url, config.ca_issuers_base_url, config.ocsp_url
        )
        self.firmware_keys = FirmwareKeys()
        self.projector = ProjectorState()
        self.ocsp = OcspState()  # this process's signed OCSP responses and loaded responders
        # Enrolled fixtures by certificate fingerprint, valid for one auth generation (ADR 0017).
        self.fixture_identities: GenerationCache[str, FixtureIdentity] = GenerationCache()
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
        migrate: bool = False,
        check_schema: bool = True,
    ) -> Instance:
        """Open the instance in ``home``. Nothing migrates on its own: with ``migrate`` (``fabguard db
        upgrade``, ``serve --migrate``) its schema is brought to the code's revision and the CAs ``init``
        made are registered; otherwise a database whose schema is not the code's is refused with
        ``database_behind_code`` (or ``database_ahead_of_code``), saying what to run, unless
        ``check_schema`` is off (a backup copies the database as it is)."""
        inst = cls(home, load_config(home), env=env, clock=clock, database_url=database_url)
        try:
            if migrate:
                inst.upgrade()
            elif check_schema:
                require_current_schema(inst.db)
        except BaseException:
            inst.close()
            raise
        return inst

    def schema(self) -> SchemaStatus:
        """Where this instance's database schema stands against the code (``Unavailable`` if unreachable)."""
        return schema_status(self.db)

    def upgrade(self) -> None:
        """Bring the database's schema to the code's revision and register the CAs ``init`` made (idempotent)."""
        upgrade(self.db)
        seed_registry(self.db, self.cas, self.keys, self.clock)

    def close(self) -> None:
        self.db.dispose()
        self.keys.close()


def require_current_schema(db: Database) -> SchemaStatus:
    """``db``'s schema status, if it is the code's; ``SchemaMismatch`` saying what to run otherwise."""
    status = schema_status(db)
    if status.state == "behind":
        at = f"at revision {status.database}" if status.database else "empty (no FabGuard schema)"
        raise SchemaMismatch(
            f"the database is {at} and this FabGuard needs revision {status.code}: back it up, then run "
            "'fabguard db upgrade' (or start the server with 'fabguard serve --migrate')"
        )
    if status.state == "ahead":
        raise SchemaMismatch(
            f"the database is at revision {status.database}, which this FabGuard (revision {status.code}) "
            "does not know: a newer FabGuard upgraded it; run that release (schemas are never downgraded)",
            code="database_ahead_of_code",
        )
    return status
