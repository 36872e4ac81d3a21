"""One error hierarchy for FabGuard.

Every error carries a stable machine-readable ``code``, an HTTP ``status`` and a human message.
The API renders them as ``{"error": {"code": ..., "message": ...}}``; the CLI prints the message.
"""

from __future__ import annotations

from typing import Any

# Refusal codes a fixture can meet while provisioning, with the HTTP status each maps to.
# These strings are part of the public API: never rename one.
REFUSAL_STATUS: dict[str, int] = {
    "unauthorized": 401,
    "unknown_fixture": 401,
    "fixture_revoked": 403,
    "wrong_site": 403,
    "order_not_found": 404,
    "order_inactive": 409,
    "order_expired": 409,
    "order_not_yet_valid": 409,
    "quota_exhausted": 409,
    "csr_invalid": 400,
    "key_type_not_allowed": 400,
    "serial_invalid": 400,
    "serial_mismatch": 400,
    "test_missing": 409,
    "test_failed": 409,
    "key_reused": 409,
    "serial_has_other_key": 409,
    "unit_revoked": 409,
    "issuing_ca_revoked": 409,
}


class FabGuardError(Exception):
    """Root of every error FabGuard raises on purpose."""

    code: str = "error"
    status: int = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def __str__(self) -> str:
        return self.message


class Refusal(FabGuardError):
    """A decision against a fixture's request: recorded as an event, consumes nothing."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REFUSAL_STATUS:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(message, code=code, status=REFUSAL_STATUS[code])


class InvalidRequest(FabGuardError):
    """The request is malformed or breaks a documented limit."""

    code = "invalid_request"
    status = 422


class NotFound(FabGuardError):
    code = "not_found"
    status = 404


class Conflict(FabGuardError):
    code = "conflict"
    status = 409


class Unauthorized(FabGuardError):
    code = "unauthorized"
    status = 401


class Forbidden(FabGuardError):
    code = "forbidden"
    status = 403


class ConfigurationError(FabGuardError):
    """The instance or its environment is not set up as needed (missing passphrase, no instance...)."""

    code = "configuration_error"
    status = 500
