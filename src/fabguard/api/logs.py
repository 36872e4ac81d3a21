"""The server's logs: one line a request (``RequestLog``), as text for a person at a terminal or as JSON,
one object a line, for a log collector (``serve --log-format``); FabGuard's and uvicorn's records on the
same handlers, every one through ``api.redaction.RedactSecrets`` first, and every JSON value redacted again,
so no secret reaches either format.

A request's line says when, how long, which request id (the client's ``X-Request-ID`` if it is a sane
token, else a new one; echoed in the answer), route (the path template: searchable, bounded), status,
who (``person:<id>``, ``token:<id>`` or ``fixture:<id>``, noted by ``api.deps`` once it knows) and the
refusal code of an error answer. Other records logged while the request is served carry its id too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from uvicorn.logging import DefaultFormatter

from fabguard.api.redaction import RedactSecrets, redact

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
ACCESS_LOGGER = "fabguard.access"
REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Where RequestLog keeps what the routes' dependencies learn about a request (who is calling).
_NOTES = "fabguard.log"
# The id of the request being served. A context variable, not process state: each request (and the worker
# thread a sync route runs in, which copies the context) sees its own.
_request_id: ContextVar[str | None] = ContextVar("fabguard_request_id", default=None)
# The fields of a request's line, in the order a JSON line gives them after time, level and logger.
REQUEST_FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms", "who", "who_name", "code", "client")

log = logging.getLogger(ACCESS_LOGGER)


def default_log_format(stream: TextIO | None = None) -> LogFormat:
    """Text at a terminal, JSON otherwise (a service manager, a container, a pipe to a collector)."""
    stream = sys.stderr if stream is None else stream
    return "text" if stream.isatty() else "json"


def note_who(
    scope: MutableMapping[str, Any], kind: Literal["person", "token", "fixture"], ident: str, name: str
) -> None:
    """Record who is calling, for the request's log line (``api.deps`` calls it once it has authenticated)."""
    notes = scope.get(_NOTES)
    if notes is not None:
        notes["who"], notes["who_name"] = f"{kind}:{ident}", name


def _utc_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


class WithRequestId(logging.Filter):
    """Gives every record logged while a request is served that request's id (``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, a request's
    fields when the record has them, ``exception`` for a traceback; every string redacted."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(_redacted(line), ensure_ascii=False, separators=(",", ":"))


class TextFormatter(DefaultFormatter):
    """uvicorn's text (``INFO:     message``) after a UTC time stamp, with the request id when there is one."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        if request_id and record.name != ACCESS_LOGGER:  # a request's own line names it already
            text += f" [request {request_id}]"
        return text


def log_config(level: str, log_format: LogFormat = "text", *, access_log: bool = False) -> dict[str, Any]:
    """The logging configuration of a server (uvicorn's ``log_config``): uvicorn's and FabGuard's loggers
    at ``level`` on stderr, the request lines (``RequestLog``) on stdout if ``access_log``, all in
    ``log_format``, each handler redacting secrets first. uvicorn's own access log is replaced, off."""
    text = {"()": TextFormatter, "use_colors": None}
    formatters = {
        "text": {**text, "fmt": "%(asctime)s %(levelprefix)s %(message)s"},
        "named": {**text, "fmt": "%(asctime)s %(levelprefix)s %(name)s: %(message)s"},
        "json": {"()": JsonFormatter},
    }

    def handler(formatter: str, stream: str) -> dict[str, Any]:
        chosen = "json" if log_format == "json" else formatter
        return {
            "formatter": chosen,
            "class": "logging.StreamHandler",
            "stream": f"ext://sys.{stream}",
            "filters": ["redact", "request_id"],
        }

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}, "request_id": {"()": WithRequestId}},
        "formatters": formatters,
        "handlers": {
            "default": handler("text", "stderr"),
            "fabguard": handler("named", "stderr"),
            "access": handler("text", "stdout"),
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "fabguard": {"handlers": ["fabguard"], "level": level.upper(), "propagate": False},
            ACCESS_LOGGER: {
                "handlers": ["access"],
                "level": "INFO" if access_log else "CRITICAL",
                "propagate": False,
            },
        },
    }


def _request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER.encode():
            given = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(given):
                return given
            break  # anything else (too long, a line break, a quote) is not echoed nor logged: a new id
    return uuid.uuid4().hex


def _error_code(body: bytes) -> str | None:
    try:
        error = json.loads(body).get("error")
        return str(error["code"]) if isinstance(error, dict) else None
    except (ValueError, AttributeError, KeyError, TypeError):
        return None


class RequestLog:
    """ASGI middleware, outermost: gives each HTTP request an id (echoed as ``X-Request-ID``) and logs
    one line when its answer is done (or failed), with the fields of ``REQUEST_FIELDS``; and tells
    ``metrics`` (``api.metrics.ServerMetrics``) each request's method, route template, status and duration."""

    def __init__(self, app: Any, metrics: Any = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_of(scope.get("headers", []))
        token = _request_id.set(request_id)
        notes: dict[str, Any] = {}
        scope[_NOTES] = notes
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "code": None, "error_body": False}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = list(message.get("headers", []))
                if not any(n.lower() == REQUEST_ID_HEADER.encode() for n, _ in headers):
                    headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
                seen["error_body"] = message["status"] >= 400 and any(
                    n.lower() == b"content-type" and v.startswith(b"application/json") for n, v in headers
                )
            elif message["type"] == "http.response.body" and seen["error_body"] and seen["code"] is None:
                seen["code"] = _error_code(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
            took = time.perf_counter() - started
            if self.metrics is not None:
                route = getattr(scope.get("route"), "path", None)
                self.metrics.observe_request(scope.get("method", ""), route, seen["status"], took)
            if log.isEnabledFor(logging.INFO):
                self._log(scope, request_id, seen, notes, took)

    @staticmethod
    def _log(scope: dict[str, Any], request_id: str, seen: dict[str, Any], notes: dict[str, Any], took: float) -> None:
        route = scope.get("route")
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("path", "") + (f"?{query}" if query else "")
        client = scope.get("client")
        fields = {
            "request_id": request_id,
            "method": scope.get("method"),
            "route": getattr(route, "path", None),
            "path": scope.get("path"),
            "status": seen["status"],
            "duration_ms": round(took * 1000, 3),
            "who": notes.get("who"),
            "who_name": notes.get("who_name"),
            "code": seen["code"],
            "client": client[0] if client else None,
        }
        log.info(
            '%s - "%s %s HTTP/%s" %d %.1fms id=%s who=%s code=%s',
            fields["client"] or "-",
            fields["method"],
            target,
            scope.get("http_version", "1.1"),
            fields["status"],
            took * 1000,
            request_id,
            fields["who"] or "-",
            fields["code"] or "-",
            extra=fields,
        )


__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "JsonFormatter",
    "LogFormat",
    "RequestLog",
    "TextFormatter",
    "WithRequestId",
    "default_log_format",
    "log_config",
    "note_who",
]
