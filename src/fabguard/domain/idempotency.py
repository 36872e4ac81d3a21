"""Idempotency keys (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): the key a client chose
for one logical request, and the fingerprint of that request's body that a resend must match."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from fabguard.domain.errors import InvalidRequest

MAX_KEY_LENGTH = 255
# Printable ASCII, no leading or trailing space (HTTP strips those anyway, so two keys would look alike).
_KEY_RE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client-chosen unique key (a UUID, say): 1 to 255 printable ASCII characters."""

    value: str

    @classmethod
    def parse(cls, header: str) -> IdempotencyKey:
        """The header's value, bare or as a structured-field string (``"..."``, the draft's form)."""
        text = header.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = re.sub(r"\\([\"\\])", r"\1", text[1:-1])
        if len(text) > MAX_KEY_LENGTH or not _KEY_RE.fullmatch(text):
            raise InvalidRequest(
                f"the Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                code="idempotency_key_invalid",
                status=400,
            )
        return cls(text)


def request_fingerprint(operation: str, body: object) -> str:
    """SHA-256 over the operation and the body's canonical JSON: the same JSON value, however it was
    spaced or ordered, gives the same fingerprint; another operation or another value does not."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{operation}\n{canonical}".encode()).hexdigest()
