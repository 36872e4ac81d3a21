"""Keeping secrets out of the server's logs (``api.logs`` configures them): every handler passes each record through
:class:`RedactSecrets` first, so no API token, enrolment token, ``?token=`` value, bearer credential or
private key reaches a log line, whatever logged it (an access log line, uvicorn's ASGI trace, a traceback).
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"

_PATTERNS = (
    # A private key in PEM, whole (a traceback or a debug dump of a file's content).
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), REDACTED),
    # API tokens (fgt_), fixture enrolment tokens (fge_) and browser sessions (fgs_): keep the prefix, so a reader sees which kind.
    (re.compile(r"\b(fg[tes]_)[A-Za-z0-9_\-]+"), r"\g<1>" + REDACTED),
    # A credential in a query string, e.g. the dashboard stream's ?token= (EventSource cannot send headers).
    (re.compile(r"([?&](?:token|access_token|secret|password|passphrase|pin)=)[^&\s\"']*", re.I), r"\g<1>" + REDACTED),
    # Authorization headers, whatever their scheme, as text, JSON or an ASGI scope's (b'name', b'value').
    (
        re.compile(r"(authorization['\"]?\s*[:=,]\s*b?['\"]?)(?:(?:bearer|basic)\s+)?[^\s'\"]+", re.I),
        r"\g<1>" + REDACTED,
    ),
)


# What every pattern above needs to find (case aside): a line without any of these has nothing to redact, so one
# search spares the four substitutions on nearly every line (each request's access line goes through here twice).
_MAYBE_SECRET = re.compile(
    r"PRIVATE KEY|fg[tes]_|[?&](?:token|access_token|secret|password|passphrase|pin)=|authorization", re.I
)


def redact(text: str) -> str:
    """``text`` with every secret the patterns know replaced by ``[redacted]``."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if isinstance(value, (list, tuple, dict)):
        # Containers (an ASGI scope with its headers, say) are logged through their repr.
        return redact(repr(value))
    return value


class RedactSecrets(logging.Filter):
    """A handler filter: redacts the message, each argument (uvicorn's access formatter reads its
    arguments one by one, so they stay a tuple) and the traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redacted(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
