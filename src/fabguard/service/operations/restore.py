"""Restoring a backup (made by :mod:`fabguard.service.operations.backup`) into a new instance directory.

Every check comes before anything is written: the manifest, every file's SHA-256, an empty target home,
and (PostgreSQL) an empty target database. The home is assembled beside its final place and renamed into
it at the end; the restored database is checked against the manifest's ledger (event count and root)
before that. Nothing is decrypted: the keys are copied as they were backed up.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from fabguard.domain.errors import Conflict, FabGuardError, InvalidRequest
from fabguard.service.core.config import CONFIG_NAME, InstanceConfig
from fabguard.service.operations.backup import (
    FORMAT,
    MANIFEST,
    PG_DUMP_FILE,
    SQLITE_FILE,
    is_empty_or_absent,
    ledger_state,
    move_into_place,
    staging_dir,
)
from fabguard.store import backups

log = logging.getLogger("fabguard.backup")


@dataclass(frozen=True)
class Restored:
    home: Path
    engine: str
    database_url: str | None
    event_count: int
    units: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "engine": self.engine,
            "event_count": self.event_count,
            "units": self.units,
        }


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="backup_invalid")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a backup directory, checked for shape (not yet its files)."""
    path = directory / MANIFEST
    if not path.is_file():
        raise _invalid(f"{directory} is not a FabGuard backup: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _invalid(f"{path} is not a {FORMAT} manifest")
    files = manifest.get("files")
    engine = manifest.get("engine")
    ledger = manifest.get("ledger")
    if engine not in ("sqlite", "postgresql") or not isinstance(files, dict) or not isinstance(ledger, dict):
        raise _invalid(f"{path} lacks its engine, files or ledger")
    needed = {SQLITE_FILE if engine == "sqlite" else PG_DUMP_FILE, f"home/{CONFIG_NAME}"}
    if not needed <= files.keys():
        raise _invalid(f"{path} does not list {', '.join(sorted(needed - files.keys()))}")
    for rel, info in files.items():
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or parts[0] not in ("home", "database"):
            raise _invalid(f"{path} names a file outside the backup: {rel!r}")
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            raise _invalid(f"{path} gives no SHA-256 for {rel}")
    return manifest


def verify_backup(directory: Path) -> dict[str, Any]:
    """Check every file the manifest lists against its SHA-256; returns the manifest."""
    manifest = read_manifest(directory)
    missing, altered = [], []
    for rel, info in manifest["files"].items():
        path = directory / rel
        if not path.is_file():
            missing.append(rel)
            continue
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != info["sha256"]:
            altered.append(rel)
    if missing:
        raise InvalidRequest(
            f"the backup is incomplete: {', '.join(missing)} missing; nothing was restored", code="backup_incomplete"
        )
    if altered:
        raise InvalidRequest(
            f"the backup was altered: {', '.join(altered)} does not match its SHA-256 in the manifest; "
            "nothing was restored",
            code="backup_tampered",
        )
    return manifest


def _target_database(engine: str, database_url: str | None) -> str | None:
    """The database to restore into, checked: None for SQLite in the new home."""
    if database_url is None:
        if engine == "postgresql":
            raise InvalidRequest(
                "this is a PostgreSQL backup: name an empty database to restore into with --database-url",
                code="backup_engine_mismatch",
            )
        return None
    try:
        backend = make_url(database_url).get_backend_name()
    except ArgumentError:
        raise InvalidRequest(f"{database_url!r} is not a database URL", code="backup_engine_mismatch") from None
    if engine == "sqlite" or backend != "postgresql":
        raise InvalidRequest(
            f"a {engine} backup restores into "
            + ("the new home's own SQLite file (no --database-url)" if engine == "sqlite" else "PostgreSQL")
            + f", not {backend}",
            code="backup_engine_mismatch",
        )
    try:
        empty = backups.pg_is_empty(database_url)
    except OperationalError as exc:
        shown = make_url(database_url).render_as_string(hide_password=True)
        first = str(exc.orig or exc).strip().splitlines()[0]
        raise InvalidRequest(f"cannot open the target database {shown}: {first}") from None
    if not empty:
        raise Conflict(
            "the target PostgreSQL database is not empty: restore into a new, empty database",
            code="restore_target_exists",
        )
    backups.pg_tool("pg_restore")  # present, before anything is written
    return database_url


def _copy_home(directory: Path, manifest: dict[str, Any], staging: Path, database_url: str | None) -> None:
    for rel, info in manifest["files"].items():
        parts = Path(rel).parts
        if parts[0] != "home":
            continue
        out = staging.joinpath(*parts[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        data = (directory / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != info["sha256"]:  # changed since it was checked
            raise InvalidRequest(f"{rel} changed during the restore; nothing was restored", code="backup_tampered")
        out.write_bytes(data)
        if parts[1] == "keys":
            out.chmod(0o600)
    # The configuration as it was, but pointing at the restored database: the new home's own SQLite
    # file, or the PostgreSQL database named for the restore.
    config = InstanceConfig.from_json((staging / CONFIG_NAME).read_text())
    (staging / CONFIG_NAME).write_text(dataclasses.replace(config, database_url=database_url).to_json())


def _check_restored(manifest: dict[str, Any], staging: Path, database_url: str | None) -> int:
    """The restored database holds the manifest's ledger (count and root); returns its event count."""
    opened = backups.read_database(database_url) if database_url else backups.read_sqlite_file(staging / "fabguard.db")
    with opened as s:
        state = ledger_state(s)
    want = manifest["ledger"]
    if state.event_count != want.get("event_count") or base64.b64encode(state.root).decode() != want.get("root"):
        raise FabGuardError(
            f"the restored ledger ({state.event_count} events) does not match the backup's manifest "
            f"({want.get('event_count')} events)",
            code="restore_failed",
            status=500,
        )
    return state.event_count


def restore(directory: Path, home: Path, *, database_url: str | None = None) -> Restored:
    """Restore the backup in ``directory`` into the new instance directory ``home`` (and, for a PostgreSQL
    backup, the empty database ``database_url``). Refuses, writing nothing, a backup that does not match
    its manifest, an existing instance or a database that is not empty."""
    try:
        manifest = verify_backup(directory)
        if not is_empty_or_absent(home):
            raise Conflict(
                f"{home} already exists and is not empty: restore into a new home", code="restore_target_exists"
            )
        engine = str(manifest["engine"])
        target_db = _target_database(engine, database_url)
    except FabGuardError as refusal:
        log.warning("restore of %s into %s refused: %s [%s]", directory, home, refusal.message, refusal.code)
        raise
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(home, "restore")
    try:
        _copy_home(directory, manifest, staging, target_db)
        if target_db is None:
            shutil.copyfile(directory / SQLITE_FILE, staging / "fabguard.db")
            (staging / "fabguard.db").chmod(0o600)  # as private as init makes it (doctor checks it)
        else:
            backups.pg_restore(target_db, directory / PG_DUMP_FILE)
        events = _check_restored(manifest, staging, target_db)
        move_into_place(staging, home)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Restored(home, engine, target_db, events, int(manifest.get("units", 0)))
