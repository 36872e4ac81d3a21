"""Read a JSON object from a file without holding one of its members whole: that member (an object, such as
an export manifest's ``certificate_files``, one member per unit) is handed over member by member.

Accepts and refuses exactly what ``json.loads`` does (the same decoder reads every value; a member named twice
counts as its last), holding the other members and a window of the file in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TextIO

from fabguard.domain.errors import FabGuardError

_DECODER = json.JSONDecoder()
_CHUNK = 1 << 16


class NotAnObject(FabGuardError, ValueError):
    """The file is JSON, but not an object (an audit's failure where it is an export's manifest)."""

    code = "audit_failed"
    status = 422


class _Reader:
    """A window on a text file that JSON values are decoded from in order."""

    def __init__(self, fh: TextIO, chunk: int) -> None:
        self._fh = fh
        self._chunk = chunk
        self._buf = ""
        self._pos = 0
        self._eof = False

    def _more(self, size: int = 0) -> bool:
        if self._eof:
            return False
        text = self._fh.read(size or self._chunk)
        if not text:
            self._eof = True
            return False
        if self._pos > self._chunk:
            self._buf, self._pos = self._buf[self._pos :], 0
        self._buf += text
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in " \t\n\r":
                self._pos += 1
            if self._pos < len(self._buf) or not self._more():
                return self._buf[self._pos : self._pos + 1]

    def take(self, expected: str) -> str:
        """The next character, which must be one of ``expected``."""
        char = self.peek()
        if not char or char not in expected:
            raise ValueError(f"expected one of {expected!r} at character {self._pos}")
        self._pos += 1
        return char

    def value(self) -> object:
        """The next value, whole (a value that reaches the end of the window is read again with more of it)."""
        self.peek()
        more = self._chunk
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                if self._eof:
                    raise
            else:
                if end < len(self._buf) or self._eof:  # a number could go on past the window
                    self._pos = end
                    return value
            self._more(more)
            more *= 2

    def key(self) -> str:
        key = self.value()
        if not isinstance(key, str):
            raise ValueError("an object's key is not a string")
        self.take(":")
        return key


def read_object(
    fh: TextIO,
    streamed: str,
    member: Callable[[str, object], None],
    restart: Callable[[], None],
    *,
    chunk: int = _CHUNK,
) -> tuple[dict[str, object], bool]:
    """The file's top-level object but for member ``streamed``, whose own members go to ``member`` one at a
    time (``restart`` is called before each time ``streamed`` appears: the last one counts); and whether
    ``streamed`` (its last appearance) was an object handed over that way. A ``streamed`` that is not an
    object is kept among the others. Raises ValueError (``NotAnObject`` for JSON that is not an object)."""
    reader = _Reader(fh, chunk)
    others: dict[str, object] = {}
    was_streamed = False
    if reader.peek() != "{":
        reader.value()
        if reader.peek():
            raise ValueError("extra data after the JSON value")
        raise NotAnObject("the JSON value is not an object")
    reader.take("{")
    if reader.peek() == "}":
        reader.take("}")
    else:
        while True:
            name = reader.key()
            if name == streamed:
                restart()
                others.pop(name, None)
                was_streamed = reader.peek() == "{"
            if name == streamed and was_streamed:
                _members(reader, member)
            else:
                others[name] = reader.value()
            if reader.take(",}") == "}":
                break
    if reader.peek():
        raise ValueError("extra data after the JSON object")
    return others, was_streamed


def _members(reader: _Reader, member: Callable[[str, object], None]) -> None:
    reader.take("{")
    if reader.peek() == "}":
        reader.take("}")
        return
    while True:
        name = reader.key()
        member(name, reader.value())
        if reader.take(",}") == "}":
            return


__all__ = ["NotAnObject", "read_object"]
