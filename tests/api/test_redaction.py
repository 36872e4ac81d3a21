"""``redact``'s quick check (one search before the four substitutions) never lets a secret through: every text any
pattern would change is one the check finds, in any letter case the pattern accepts."""

from __future__ import annotations

import pytest

from fabguard.api import redaction
from fabguard.api.redaction import REDACTED, redact

SECRETS = [
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\ncut short",
    "token fgt_AbC-123_x in a message",
    "enrol with fge_abcdef",
    "cookie fgs_session-value",
    "GET /api/v1/dashboard/stream?token=abc123 HTTP/1.1",
    "GET /x?a=1&PASSWORD=hunter2",
    "/y?Access_Token=zzz&b=2",
    "/y?pin=1234",
    "/y?Passphrase=open",
    "/y?secret=s",
    "Authorization: Bearer abc.def",
    "AUTHORIZATION: Basic dXNlcjpwYXNz",
    "(b'authorization', b'Bearer fgt_x')",
    '{"Authorization": "opaque-credential"}',
]


@pytest.mark.parametrize("text", SECRETS)
def test_every_secret_is_found_by_the_quick_check_and_redacted(text: str) -> None:
    assert redaction._MAYBE_SECRET.search(text) is not None
    out = redact(text)
    assert out != text and REDACTED in out


@pytest.mark.parametrize("text", SECRETS)
def test_the_quick_check_is_wider_than_every_pattern(text: str) -> None:
    # Whatever any pattern matches, in whatever case, the check matches too (else redact would skip it).
    for variant in (text, text.lower(), text.upper(), text.swapcase()):
        if any(pattern.search(variant) for pattern, _ in redaction._PATTERNS):
            assert redaction._MAYBE_SECRET.search(variant) is not None, variant


def test_a_line_without_secrets_is_returned_as_it_is() -> None:
    line = '127.0.0.1 - "POST /api/v1/units/provision HTTP/1.1" 201 3.2ms id=abc who=fixture:fx-1 code=-'
    assert redaction._MAYBE_SECRET.search(line) is None
    assert redact(line) is line
