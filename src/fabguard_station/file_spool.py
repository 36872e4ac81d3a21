"""A durable, exactly-once spool for test-record files in any format the server reads.

``upload`` first writes each file here (its bytes as they are, and beside them how to send it: format,
time zone, original name), then sends it; an entry leaves the spool only once the server has stored its
records. Each entry's ``Idempotency-Key`` is made when it is spooled and is part of its name, so a resend
after a crash, a lost answer or a dead network gets the server's first answer back and stores nothing
twice (for as long as the server keeps keys: 24 h by default). What the server refuses (a malformed
file, a serial that is not one) moves to ``rejected/`` with ``<name>.error.json`` and is never sent again.

Entry names ``<sequence>-<key>.<format>`` never match the OpenHTF uploader's ``<sequence>-<dut>.json``,
so both may share a directory. One process at a time per spool directory.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabguard_station.spool_files import TMP_PREFIX, fsync_dir, write_durably

FORMATS = ("auto", "openhtf", "atml", "teststand-xml", "junit", "csv")
REJECTED_DIR = "rejected"
_ENTRY_RE = re.compile(r"^(\d{12})-([0-9a-f]{32})\.(auto|openhtf|atml|teststand-xml|junit|csv)$")
_META = ".meta.json"
_XML_FORMATS = frozenset({"atml", "teststand-xml", "junit"})


def content_type(data: bytes, format: str) -> str:
    """The media type to send a file with; for ``auto`` read off its first bytes, as the server does."""
    if format == "openhtf":
        return "application/json"
    if format == "csv":
        return "text/csv"
    if format in _XML_FORMATS:
        return "application/xml"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "application/json"
    if head.startswith(b"<"):
        return "application/xml"
    return "text/csv"


@dataclass(frozen=True)
class Entry:
    """One spooled file: its data's path, key, format, the station's time zone and its original name."""

    path: Path
    key: str
    format: str
    tz: str | None
    name: str

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class Rejected:
    entry: Entry
    code: str
    message: str


class FileSpool:
    """Spooled test-record files, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.rejected_dir = self.directory / REJECTED_DIR
        self.rejected_dir.mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, *, format: str = "auto", tz: str | None = None, name: str = "") -> Entry:
        """Write ``data`` durably with how to send it (its key made now); returns the entry."""
        if format not in FORMATS:
            raise ValueError(f"format {format!r} is not one of {', '.join(FORMATS)}")
        key = uuid.uuid4().hex
        stem = f"{self._next_seq():012d}-{key}.{format}"
        meta = {"format": format, "tz": tz, "name": name, "spooled_at": time.time()}
        write_durably(self.directory / (stem + _META), json.dumps(meta).encode())
        tmp = self.directory / f"{TMP_PREFIX}{key}.data"
        try:
            write_durably(tmp, data)
            os.replace(tmp, self.directory / stem)  # the entry exists once its data is in place
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.directory)
        return self._entry(self.directory / stem)

    def pending(self) -> list[Entry]:
        """Entries not yet stored by the server, oldest first."""
        return [self._entry(p) for p in sorted(self.directory.iterdir()) if _ENTRY_RE.match(p.name) and p.is_file()]

    def rejected(self) -> list[Rejected]:
        out = []
        for p in sorted(self.rejected_dir.iterdir()):
            if _ENTRY_RE.match(p.name) and p.is_file():
                error = _load(self.rejected_dir / (p.name + ".error.json"))
                out.append(Rejected(self._entry(p), str(error.get("code", "refused")), str(error.get("message", ""))))
        return out

    def done(self, entry: Entry) -> None:
        """The server stored it: forget it."""
        entry.path.unlink(missing_ok=True)
        (entry.path.parent / (entry.path.name + _META)).unlink(missing_ok=True)
        fsync_dir(self.directory)

    def reject(self, entry: Entry, code: str, message: str, status: int | None) -> Rejected:
        """The server refused it and would again: keep it aside with the reason, never send it again."""
        error = {"code": code, "message": message, "status": status, "rejected_at": time.time()}
        write_durably(self.rejected_dir / (entry.path.name + ".error.json"), json.dumps(error).encode())
        meta = entry.path.parent / (entry.path.name + _META)
        if meta.exists():
            os.replace(meta, self.rejected_dir / meta.name)
        os.replace(entry.path, self.rejected_dir / entry.path.name)
        fsync_dir(self.rejected_dir)
        fsync_dir(self.directory)
        return Rejected(self._entry(self.rejected_dir / entry.path.name), code, message)

    def _entry(self, path: Path) -> Entry:
        match = _ENTRY_RE.match(path.name)
        assert match is not None
        meta = _load(path.parent / (path.name + _META))
        tz = meta.get("tz")
        return Entry(
            path, match.group(2), match.group(3), tz if isinstance(tz, str) else None, str(meta.get("name", ""))
        )

    def _next_seq(self) -> int:
        highest = 0
        for directory in (self.directory, self.rejected_dir):
            for p in directory.iterdir():
                match = _ENTRY_RE.match(p.name.removesuffix(_META))
                if match:
                    highest = max(highest, int(match.group(1)))
        return highest + 1


def _load(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):  # missing (a crash between the two writes) or torn: defaults
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["FORMATS", "REJECTED_DIR", "Entry", "FileSpool", "Rejected", "content_type"]
