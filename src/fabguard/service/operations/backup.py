"""Backing up a running instance: its database, consistent at one moment, its files, and a manifest.

A backup directory holds ``manifest.json``, ``database/`` (``fabguard.db``, an SQLite online-backup copy,
or ``fabguard.pgdump``, a ``pg_dump`` custom-format archive) and ``home/`` (``instance.json``, ``ca/*.pem``,
``keys/*.key.pem`` as they are, passphrase-encrypted, and ``analytics.json``/``webhooks.json`` if present).
The manifest says what, when and from which engine, the ledger at the moment of the copy (event count, tree
root, the latest signed checkpoint) and the SHA-256 of every file, which :mod:`fabguard.service.operations.restore`
checks before it writes anything. Nothing is decrypted: the backup needs no passphrase.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fabguard import __version__
from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.ledger import merkle
from fabguard.service.core.config import CONFIG_NAME
from fabguard.service.core.instance import Instance
from fabguard.store import backups
from fabguard.store.eventlog import event_count
from fabguard.store.models import CheckpointRow, LedgerNode, Order, Unit

MANIFEST = "manifest.json"
FORMAT = "fabguard-backup/1"
SQLITE_FILE = "database/fabguard.db"
PG_DUMP_FILE = "database/fabguard.pgdump"
# The instance directory's files a backup carries (relative to the home), as glob patterns.
HOME_FILES = (CONFIG_NAME, "analytics.json", "webhooks.json", "ca/*.pem", "keys/*.key.pem")
SECRET_DIR = "keys"


@dataclass(frozen=True)
class LedgerState:
    """The ledger inside a backup: its size and root, and the newest checkpoint it holds (if any)."""

    event_count: int
    root: bytes
    checkpoint_size: int | None
    checkpoint_root: bytes | None

    def to_dict(self) -> dict[str, Any]:
        b64 = base64.b64encode
        checkpoint = None
        if self.checkpoint_size is not None and self.checkpoint_root is not None:
            checkpoint = {"size": self.checkpoint_size, "root": b64(self.checkpoint_root).decode()}
        return {"event_count": self.event_count, "root": b64(self.root).decode(), "latest_checkpoint": checkpoint}


def ledger_state(s: Session) -> LedgerState:
    """The ledger as ``s`` sees it (a snapshot, a copy or a restored database)."""
    n = event_count(s)

    def node(level: int, idx: int) -> bytes:
        return bytes(
            s.execute(select(LedgerNode.hash).where(LedgerNode.level == level, LedgerNode.idx == idx)).scalar_one()
        )

    latest = s.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)).scalar_one_or_none()
    return LedgerState(
        n,
        merkle.root(node, n),
        latest.size if latest else None,
        bytes(latest.root) if latest else None,
    )


def _counts(s: Session) -> dict[str, int]:
    return {
        "units": int(s.execute(select(func.count()).select_from(Unit)).scalar_one()),
        "orders": int(s.execute(select(func.count()).select_from(Order)).scalar_one()),
        "quota_used": int(s.execute(select(func.coalesce(func.sum(Order.used), 0))).scalar_one()),
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def staging_dir(target: Path, purpose: str) -> Path:
    """A fresh directory beside ``target`` where a backup or restore is assembled before it is renamed into
    place, so that a failure never leaves a half-written ``target``."""
    staging = target.parent / f".{target.name}.{purpose}-{secrets.token_hex(4)}"
    staging.mkdir(parents=True, mode=0o700)
    return staging


def is_empty_or_absent(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def move_into_place(staging: Path, target: Path) -> None:
    if target.exists():
        target.rmdir()  # empty, checked before; a file appearing meanwhile makes this fail, not overwrite
    os.replace(staging, target)


def _copy_home(home: Path, dest: Path) -> list[str]:
    copied = []
    for pattern in HOME_FILES:
        for src in sorted(home.glob(pattern)):
            if not src.is_file():
                continue
            rel = src.relative_to(home)
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
            if rel.parts[0] == SECRET_DIR:
                out.chmod(0o600)  # encrypted, but as private as the originals
            copied.append(rel.as_posix())
    return copied


def _copy_database(inst: Instance, dest: Path) -> tuple[str, str, LedgerState, dict[str, int]]:
    """Copy the database into ``dest``; returns (engine, file, ledger state, counts) of the copy itself."""
    (dest / "database").mkdir()
    if inst.db.is_sqlite:
        copy = dest / SQLITE_FILE
        backups.sqlite_online_copy(inst.db, copy)
        copy.chmod(0o600)  # token hashes, enrolment tokens, every unit: as private as the original
        with backups.read_sqlite_file(copy) as s:
            return "sqlite", SQLITE_FILE, ledger_state(s), _counts(s)
    with backups.pg_snapshot(inst.db) as (snapshot, s):
        state, counts = ledger_state(s), _counts(s)
        backups.pg_dump(inst.db, dest / PG_DUMP_FILE, snapshot)
    (dest / PG_DUMP_FILE).chmod(0o600)
    return "postgresql", PG_DUMP_FILE, state, counts


def backup(inst: Instance, out: Path) -> dict[str, Any]:
    """Back up the running instance into the new directory ``out``; returns the manifest written there."""
    if not is_empty_or_absent(out):
        raise Conflict(
            f"{out} already exists and is not empty: back up into a new directory", code="backup_target_exists"
        )
    if inst.home.resolve() == out.resolve() or inst.home.resolve() in out.resolve().parents:
        raise InvalidRequest(f"{out} is inside the instance directory: back up elsewhere")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out, "backup")
    try:
        # The database first: files copied after it are at least as new (a CA added meanwhile brings an
        # extra certificate file, harmless), never older than a row that names them.
        engine, db_file, state, counts = _copy_database(inst, staging)
        files = [db_file, *(f"home/{rel}" for rel in _copy_home(inst.home, staging / "home"))]
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "fabguard_version": __version__,
            "created_at": inst.clock().isoformat(),
            "engine": engine,
            "organization": inst.config.organization,
            "key_backend": inst.config.key_backend,
            "ledger": state.to_dict(),
            **counts,
            "files": {
                rel: {"sha256": sha256_file(staging / rel), "bytes": (staging / rel).stat().st_size} for rel in files
            },
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
