"""The units an export's entries issue certificates to, kept on disk so that the offline verifier's memory
does not grow with the export (a real export of 5M units would otherwise need gigabytes).

:class:`UnitIndex` replays the entries exactly as :class:`fabguard.ledger.export_files.IssuedCertificates`
does (a unit's current certificate is the last one issued to it from its first ``unit.provisioned`` on; a
certificate recorded by several entries belongs to the unit of the last one) and names each unit's file the
same way, but in an SQLite database in a temporary folder of its own, removed on :meth:`close`: appended to
while the entries stream, then sorted and indexed by SQLite (on disk, in a page cache of fixed size). The
export's certificate files and its manifest's map are read into it the same way, a batch at a time, and
compared with SQL, in the order of the names, so every check of :mod:`fabguard.ledger.verify` is kept.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from fabguard.domain.filenames import safe_file_name
from fabguard.ledger.audit_failure import AuditFailure
from fabguard.ledger.export_files import IssuedUnit, issuance

_BATCH = 5_000
_CACHE_KIB = 2 * 1024  # SQLite's page cache (its default size), and its sorters' memory: fixed, whatever the units

_DERIVE = (
    # The entry from which each unit counts: its first unit.provisioned (a re-enrolment before it is ignored).
    "CREATE TABLE first AS SELECT order_id, serial, MIN(idx) AS idx FROM seen WHERE provisioned "
    "GROUP BY order_id, serial",
    "CREATE UNIQUE INDEX ix_first ON first (order_id, serial)",
    "CREATE TABLE accepted AS SELECT s.idx, s.order_id, s.serial, s.sha, f.idx AS since FROM seen s "
    "JOIN first f ON f.order_id = s.order_id AND f.serial = s.serial WHERE s.idx >= f.idx",
    # SQLite takes a bare column of an aggregate query from the row holding the MAX().
    "CREATE TABLE recorded AS SELECT sha, order_id, serial, MAX(idx) AS idx FROM accepted GROUP BY sha",
    "CREATE UNIQUE INDEX ix_recorded ON recorded (sha)",
    "CREATE TABLE units AS SELECT order_id, serial, sha, MAX(idx) AS idx, since FROM accepted "
    "GROUP BY order_id, serial",
    "CREATE UNIQUE INDEX ix_units ON units (order_id, serial)",
    "DROP TABLE accepted",
    "DROP TABLE first",
    # A plain serial is its own name (safe_file_name's rule, said in SQL so Python is called only for the rest).
    "CREATE TABLE bases AS SELECT CASE WHEN serial GLOB '*[^A-Za-z0-9._-]*' OR serial GLOB '.*' "
    "THEN safe_file_name(serial) ELSE serial END AS base, order_id, serial, sha, idx, since FROM units",
    # certs/NAME.pem (export_files.CERTS); a name two units would share, ignoring case, carries the first 16
    # hex digits of each one's digest.
    "CREATE TABLE named AS SELECT 'certs/' || CASE WHEN COUNT(*) OVER (PARTITION BY lower(base)) = 1 THEN base "
    "ELSE base || '~' || substr(sha, 1, 16) END || '.pem' AS name, order_id, serial, sha, idx, since FROM bases",
    # Two units under one name even so (one serial, one certificate, two orders): the writer's map keeps the
    # unit provisioned last.
    "CREATE TABLE files AS SELECT name, order_id, serial, sha, idx, MAX(since) FROM named GROUP BY name",
    "DROP TABLE bases",
    "DROP TABLE named",
    "CREATE UNIQUE INDEX ix_files_name ON files (name)",
    "CREATE INDEX ix_files_unit ON files (order_id, serial)",
    "CREATE TABLE present (name TEXT PRIMARY KEY, added INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE mapped (name TEXT PRIMARY KEY, serial, order_id, ok INTEGER NOT NULL) WITHOUT ROWID",
)
_UNIT = "order_id, serial, sha, idx"


def is_text(value: str) -> bool:
    """Whether ``value`` can be stored as SQLite text (UTF-8): not with an unpaired surrogate, which a JSON
    escape (``\\ud800``) or a file name that is not UTF-8 (Python's surrogate escapes) can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(value: str) -> str:
    """``value`` made storable, for a message (an unpaired surrogate shown as its escape: ``\\udcff``)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _unit(row: tuple[str, str, str, int]) -> IssuedUnit:
    return IssuedUnit(row[0], row[1], row[2], int(row[3]))


class UnitIndex:
    """The units the entries issue certificates to, their files, and the files an export holds, on disk."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="fabguard-audit-")
        self._db = sqlite3.connect(Path(self._folder.name) / "units.db", isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE", f"cache_size = -{_CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.create_function("safe_file_name", 1, safe_file_name, deterministic=True)
        self._db.execute("BEGIN")
        self._db.execute("CREATE TABLE seen (idx INTEGER PRIMARY KEY, provisioned INTEGER, order_id, serial, sha)")
        self._seen: list[tuple[int, bool, str, str, str]] = []
        self._mapped: list[tuple[str, object, object, bool]] = []
        self._derived = False

    def __enter__(self) -> UnitIndex:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._folder.cleanup()

    # ------------------------------------------------------------------ the entries
    def see(self, index: int, line: bytes) -> None:
        """Take one entry's bytes, in order (any entry: those that issue no certificate are skipped)."""
        issued = issuance(line)
        if issued is not None:
            if not (is_text(issued[1]) and is_text(issued[2])):  # no server issues to one: no file can name it
                raise AuditFailure(f"entry {index}: its order or serial is not Unicode text (an unpaired surrogate)")
            self._seen.append((index, *issued))
            if len(self._seen) >= _BATCH:
                self._flush_seen()

    def _flush_seen(self) -> None:
        self._db.executemany("INSERT INTO seen VALUES (?, ?, ?, ?, ?)", self._seen)
        self._seen.clear()

    def derive(self) -> None:
        """After the last entry: each unit's current certificate and file (once)."""
        if self._derived:
            return
        self._flush_seen()
        for statement in _DERIVE:
            self._db.execute(statement)
        self._db.execute("DROP TABLE seen")
        self._derived = True

    def file_count(self) -> int:
        self.derive()
        return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def file_of(self, name: str) -> IssuedUnit | None:
        """The unit whose certificate file is ``name`` (``certs/….pem``), if any."""
        self.derive()
        query = f"SELECT {_UNIT} FROM files WHERE name = ?"  # noqa: S608 (constants)
        row = self._db.execute(query, (name,)).fetchone()
        return None if row is None else _unit(row)

    def home(self, unit: IssuedUnit) -> str:
        """The name of ``unit``'s file (or why it has none: another unit holds its name)."""
        self.derive()
        query = "SELECT name FROM files WHERE order_id = ? AND serial = ?"
        row = self._db.execute(query, (unit.order_id, unit.serial)).fetchone()
        return "none (another unit's file has its name)" if row is None else str(row[0])

    def recorded(self, sha: str) -> IssuedUnit | None:
        """The unit of the last entry that issued certificate ``sha``, if one did."""
        self.derive()
        query = f"SELECT {_UNIT} FROM recorded WHERE sha = ?"  # noqa: S608 (constants)
        row = self._db.execute(query, (sha,)).fetchone()
        return None if row is None else _unit(row)

    def current(self, unit: IssuedUnit) -> bool:
        """Whether ``unit`` (as an entry issued it) still holds that certificate (no re-enrolment since)."""
        self.derive()
        query = "SELECT 1 FROM units WHERE order_id = ? AND serial = ? AND sha = ? AND idx = ?"
        return (
            self._db.execute(query, (unit.order_id, unit.serial, unit.cert_sha256, unit.index)).fetchone() is not None
        )

    # ------------------------------------------------------------------ the export's files
    def add_present(self, names: Iterator[tuple[str, bool]]) -> None:
        """The export's entries under ``certs/`` (name, and whether it is anything but a plain ``.pem`` file)."""
        self.derive()
        batch: list[tuple[str, bool]] = []
        for item in names:
            batch.append(item)
            if len(batch) >= _BATCH:
                self._db.executemany("INSERT OR REPLACE INTO present VALUES (?, ?)", batch)
                batch.clear()
        self._db.executemany("INSERT OR REPLACE INTO present VALUES (?, ?)", batch)

    def first_added(self) -> str | None:
        """The first name (in order) under ``certs/`` that is not a plain ``.pem`` file."""
        row = self._db.execute("SELECT name FROM present WHERE added ORDER BY name LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def first_missing(self) -> tuple[str, IssuedUnit] | None:
        """The first unit's file (in the order of the names) the export does not hold."""
        self.derive()
        row = self._db.execute(
            f"SELECT name, {_UNIT} FROM files f WHERE NOT EXISTS "  # noqa: S608 (constants)
            "(SELECT 1 FROM present p WHERE p.name = f.name) ORDER BY name LIMIT 1"
        ).fetchone()
        return None if row is None else (str(row[0]), _unit(row[1:]))

    def present(self) -> Iterator[str]:
        """The export's certificate files, in the order of their names."""
        cursor = self._db.execute("SELECT name FROM present ORDER BY name")
        while rows := cursor.fetchmany(_BATCH):
            yield from (str(row[0]) for row in rows)

    # ------------------------------------------------------------------ the manifest's map
    def map_file(self, name: str, unit: object) -> None:
        """One member of the manifest's ``certificate_files`` (a later one of the same name replaces it)."""
        serial = order_id = None
        if isinstance(unit, dict) and set(unit) == {"serial", "order_id"}:
            serial, order_id = unit["serial"], unit["order_id"]
        ok = isinstance(serial, str) and isinstance(order_id, str) and is_text(serial) and is_text(order_id)
        if not ok:
            serial = order_id = None
        if not is_text(name):  # no unit's file has such a name (they are ASCII): the map is not the entries'
            name, ok = printable(name), False
        self._mapped.append((name, serial, order_id, ok))
        if len(self._mapped) >= _BATCH:
            self._flush_mapped()

    def _flush_mapped(self) -> None:
        self._db.executemany("INSERT OR REPLACE INTO mapped VALUES (?, ?, ?, ?)", self._mapped)
        self._mapped.clear()

    def clear_map(self) -> None:
        """Forget the map read so far (the manifest names ``certificate_files`` again: the last one counts)."""
        self._mapped.clear()
        self._db.execute("DELETE FROM mapped")

    def map_matches(self) -> bool:
        """Whether the manifest's map names exactly each unit's file with its serial and order."""
        self.derive()
        self._flush_mapped()
        if self._db.execute("SELECT 1 FROM mapped WHERE NOT ok LIMIT 1").fetchone() is not None:
            return False
        (mapped,) = self._db.execute("SELECT COUNT(*) FROM mapped").fetchone()
        (named,) = self._db.execute("SELECT COUNT(*) FROM files").fetchone()
        unmatched = self._db.execute(
            "SELECT 1 FROM files f LEFT JOIN mapped m ON m.name = f.name "
            "WHERE m.name IS NULL OR m.serial IS NOT f.serial OR m.order_id IS NOT f.order_id LIMIT 1"
        ).fetchone()
        return bool(mapped == named and unmatched is None)


__all__ = ["UnitIndex", "is_text", "printable"]
