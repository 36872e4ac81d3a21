"""The spool's durable files: whole writes that survive a crash, and the batch in flight with its key.

Before a batch of spooled records is sent, its idempotency key and its files' names are written to
``IN_FLIGHT``; once the server has answered, its results too; the file goes when every record of the
batch has left the spool. After a crash or a lost answer the batch is sent again with the same key and
the same records (the server then replays its answer and stores nothing twice), or, when its results
were already kept, they are applied without sending anything.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IN_FLIGHT = ".in-flight"  # never a spooled record's name (those match ``<seq>-<dut>.json``)
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class InFlight:
    """A batch being sent: its key, its files (names in the spool), the server's results once answered."""

    key: str
    files: list[str]
    results: list[Any] | None = None

    @classmethod
    def new(cls, files: list[Path]) -> InFlight:
        return cls(str(uuid.uuid4()), [p.name for p in files])

    def part_key(self, index: int) -> str:
        """The key of one record of the batch sent on its own."""
        return f"{self.key}.{index}"


def load_in_flight(spool_dir: Path) -> InFlight | None:
    path = spool_dir / IN_FLIGHT
    try:
        data = json.loads(path.read_bytes())
        return InFlight(str(data["key"]), [str(f) for f in data["files"]], data.get("results"))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # torn by a crash while written: nothing was sent under it
        path.unlink(missing_ok=True)
        return None


def save_in_flight(spool_dir: Path, batch: InFlight) -> None:
    body = {"key": batch.key, "files": batch.files, "results": batch.results}
    write_durably(spool_dir / IN_FLIGHT, json.dumps(body).encode())


def clear_in_flight(spool_dir: Path) -> None:
    (spool_dir / IN_FLIGHT).unlink(missing_ok=True)
    fsync_dir(spool_dir)


def write_durably(path: Path, data: bytes) -> None:
    """Write a file whole (temporary name in the same directory, fsync, rename)."""
    tmp = path if path.name.startswith(TMP_PREFIX) else path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}.part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if tmp != path:
        os.replace(tmp, path)


def fsync_dir(directory: Path) -> None:
    """Make renames and removals in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
