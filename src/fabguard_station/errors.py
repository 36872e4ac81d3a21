"""The one root of the fixture SDK's errors.

The SDK runs on a line PC without the server, so it does not import the server's
``fabguard.domain.errors``; its root mirrors the server's error body ``{"error": {"code", "message"}}``:
every error has a stable ``code`` and a human ``message``.
"""

from __future__ import annotations


class FixtureError(Exception):
    """Root of every error the fixture SDK raises on purpose."""

    code: str = "fixture_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


__all__ = ["FixtureError"]
