"""Answering a directory a service writes (a ledger export, a CRA evidence pack) as one ``.tar.gz``.

The service writes into a scratch directory, the answer streams the archive from a temporary file, and both
are removed once it is sent (or at once if writing fails). ``fabguard --server URL ... DIR`` unpacks it.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

ARCHIVE_MEDIA = "application/gzip"


def directory_archive(fill: Callable[[Path], dict[str, str]], filename: str) -> FileResponse:
    """``fill`` writes into a new directory it is given and returns the answer's extra headers; the answer is
    that directory as a gzip-compressed tar archive named ``filename``."""
    folder = Path(tempfile.mkdtemp(prefix="fabguard-archive-"))
    try:
        headers = fill(folder / "out")
        archive = folder / filename
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder / "out", arcname=".")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    cleanup = BackgroundTask(shutil.rmtree, folder, ignore_errors=True)
    return FileResponse(archive, media_type=ARCHIVE_MEDIA, filename=filename, headers=headers, background=cleanup)


__all__ = ["ARCHIVE_MEDIA", "directory_archive"]
