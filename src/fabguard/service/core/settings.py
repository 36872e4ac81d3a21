"""Every limit in one place, with defaults a user can read (``fabguard serve --help`` names them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    # The request line and headers together (h11's incomplete-event limit): over it, 431 headers_too_large.
    max_header_bytes: int = 16 * 1024
    # A connection whose next request's headers are not complete within this is closed (idle or slow).
    idle_seconds: int = 30
    # The whole body must arrive within this from the end of the headers: else 408 request_timeout.
    body_read_seconds: int = 30
    # Open connections per server process (each listener of it counted together), within what the
    # open-file limit leaves: one more is reset at once. See api/connections.py.
    max_connections: int = 4096
    # Per fixture, in each server process: a sustained rate and a burst; over it, 429 rate_limited (0: no limit).
    fixture_requests_per_second: int = 500
    fixture_request_burst: int = 2000
    max_csr_bytes: int = 8 * 1024
    max_test_record_bytes: int = 1024 * 1024
    max_batch_units: int = 200
    # Units one server process's writer decides in one transaction at most (group commit; a request's
    # units stay together). 1: every request in a transaction of its own.
    group_commit_units: int = 128
    max_batch_records: int = 200
    max_phases: int = 500
    max_measurements: int = 5000
    enrollment_token_hours: int = 72
    fixture_cert_days: int = 730
    max_page: int = 1000
    checkpoint_seconds: int = 30
    idempotency_key_hours: int = 24
    # How long a dual-control request waits for its second person before it expires.
    approval_hours: int = 72
    # Field checks: answers in one /field/verify-batch request, challenges in one /field/challenges
    # request, and the checks one server process's field writer decides in one transaction at most.
    max_field_batch: int = 500
    field_group_checks: int = 512

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Limits:
        known = {f.name for f in fields(cls)}
        return cls(**{k: _whole(v) for k, v in data.items() if k in known})


def _whole(value: object) -> int:
    if isinstance(value, int | float | str):  # what int() takes from JSON; a bool is an int
        return int(value)
    raise TypeError(f"a limit must be a number, not {value!r}")
