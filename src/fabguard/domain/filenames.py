"""File names made from identifiers that come from outside (a unit's serial, a CA's name, a release id).

Every file FabGuard names after such an identifier (a ledger export's certificates, the demo's output,
the CRA pack, hand-off files) takes its name from :func:`safe_file_name` and its path from
:func:`path_inside`, so an identifier can never steer where a file is written.
"""

from __future__ import annotations

import string
from pathlib import Path

from fabguard.domain.errors import Conflict, InvalidRequest

# What a name keeps as it is: portable on every file system (no ':' for Windows, no separators).
_PLAIN = frozenset(string.ascii_letters + string.digits + "._-")


def safe_file_name(identifier: str) -> str:
    """One file name for ``identifier``: the identifier itself when it is plain (ASCII letters, digits,
    ``.``, ``_``, ``-``, not starting with ``.``), else percent-encoded: every other character (``%`` too)
    and a leading ``.`` become ``%XX`` of their UTF-8 bytes. Two identifiers never share a name, and no
    name is empty, holds a path separator or starts with a dot (``..``, a hidden file)."""
    if not identifier:
        raise InvalidRequest("an empty identifier has no file name")
    out = []
    for i, char in enumerate(identifier):
        if char in _PLAIN and not (i == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def path_inside(folder: Path, name: str) -> Path:
    """``folder / name`` resolved, refused (``output_path_unsafe``) unless it lies inside ``folder``: a name
    with ``..`` or a leading ``/``, or a link in the folder that leads out of it, would write elsewhere."""
    base = folder.resolve()
    path = (folder / name).resolve()
    if path == base or not path.is_relative_to(base):
        raise Conflict(
            f"refusing to write {name!r}: it would land outside {folder} (at {path})", code="output_path_unsafe"
        )
    return path
