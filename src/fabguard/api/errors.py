"""Mapping every failure to ``{"error": {"code": ..., "message": ...}}`` with a 4xx (or, for bugs, 500).

A :class:`FabGuardError` answers with its own ``status`` and ``code``, whatever its class; the few
codes the HTTP layer itself sends are declared in ``fabguard.domain.errors`` like all the others.
A request that does not validate is ``invalid_request``, unless a parser of ours named a declared code
(``invalid_time`` from ``api.parsing``) or the value is outside a ``format`` or ``state`` parameter's
choices (``invalid_format``, ``invalid_state``, the codes those refusals always had). A 405 names, in
``Allow``, every method the path has (Starlette's own names only those of the first route it matched).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles

from fabguard.domain.errors import ERROR_STATUS, FabGuardError, Unavailable

log = logging.getLogger("fabguard.api")

_HTTP_CODES = {
    400: "malformed_json",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    401: "unauthorized",
}


# A value outside the choices of a parameter or field of this name (an Enum or Literal): its own code.
_CHOICE_CODES = {"format": "invalid_format", "state": "invalid_state"}
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def _validation_code(errors: list[dict[str, Any]]) -> str:
    for err in errors:
        kind = str(err.get("type", ""))
        if kind in ERROR_STATUS:  # a PydanticCustomError of ours, typed with its declared code
            return kind
        loc = err.get("loc") or ("",)
        if kind in ("enum", "literal_error") and loc[-1] in _CHOICE_CODES:
            return _CHOICE_CODES[str(loc[-1])]
    return "invalid_request"


def _allowed_methods(request: Request) -> str:
    """The methods some route takes at the request's path (RFC 9110: a 405 carries ``Allow``), found by
    asking the app's routes whether they match the request with each method instead of its own."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Mount):  # a mount takes any method at its prefix; static files answer two
            if isinstance(route.app, StaticFiles) and route.matches(request.scope)[0] is Match.FULL:
                allowed |= {"GET", "HEAD"}
            continue
        allowed |= {m for m in _METHODS if route.matches({**request.scope, "method": m})[0] is Match.FULL}
    return ", ".join(sorted(allowed))


# The body of every error answer, for /openapi.json (FastAPI would otherwise describe its own 422 body).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "Stable: a refusal code or another code the README lists"},
                "message": {"type": "string", "description": "What went wrong, for a person"},
            },
        }
    },
}
_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _describe_errors(app: FastAPI) -> None:
    """Make /openapi.json describe the error body: every operation's 422 and default answer is ``Error``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        spec = generate()  # FastAPI caches the document: this rewrite runs on it once
        schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
        if "Error" in schemas:
            return spec
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        for operations in spec.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = {"description": "The request is not valid", "content": _ERROR_REF}
                responses["default"] = {"description": "A refusal or another error", "content": _ERROR_REF}
        return spec

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def install_error_handlers(app: FastAPI) -> None:
    _describe_errors(app)

    @app.exception_handler(FabGuardError)
    async def _fabguard(_: Request, exc: FabGuardError) -> JSONResponse:
        if isinstance(exc, Unavailable):  # an outage, not a bug: one line, and a hint to send again
            log.warning("%s: %s", exc.code, exc.message)
            return error_response(exc.status, exc.code, exc.message, {"Retry-After": "1"})
        if exc.status >= 500:  # the server's own failure: keep it in the log, as an unexpected error is
            log.error("%s: %s", exc.code, exc.message, exc_info=exc)
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        code = _validation_code(errors)
        return error_response(ERROR_STATUS[code], code, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return error_response(exc.status_code, code, str(exc.detail), headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        # Starlette raises the error again once this answer is sent, and uvicorn then closes the connection:
        # say so, or a keep-alive client sends its next request into the closed connection.
        message = "an unexpected error occurred; it has been logged"
        return error_response(500, "internal_error", message, {"Connection": "close"})


class BodyLimit:
    """Refuse, before the app reads anything: bodies over ``limit`` bytes (declared or streamed), bodies
    that take over ``read_seconds`` to arrive (a client trickling its body must not hold a request
    open), and a request line and headers over ``max_header_bytes`` (h11's own limit applies only to
    headers still incomplete when a read ends, so a large block arriving at once would pass it)."""

    def __init__(self, app: Any, limit: int, *, read_seconds: float = 30, max_header_bytes: int = 16 * 1024) -> None:
        self.app = app
        self.limit = limit
        self.read_seconds = read_seconds
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        head = (
            len(scope.get("raw_path") or b"")
            + len(scope.get("query_string", b""))
            + sum(len(n) + len(v) + 4 for n, v in headers)
        )
        if head > self.max_header_bytes:
            log.warning("headers_too_large: %s: %d bytes of request line and headers", scope["method"], head)
            response = error_response(
                431, "headers_too_large", f"the request line and headers are over {self.max_header_bytes} bytes"
            )
            response.headers["connection"] = "close"  # its body, if any, is not read
            await response(scope, receive, send)
            return
        for name, value in headers:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, receive, send)
                    return
        # Read the whole body first (it is bounded in size and time), so a streamed oversize or slow
        # body is refused before the app sees any of it, then replay it.
        chunks: list[bytes] = []
        seen = 0
        try:
            with anyio.fail_after(self.read_seconds):
                while True:
                    message: dict[str, Any] = await receive()
                    if message["type"] != "http.request":
                        return
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.limit:
                        await self._reject(scope, receive, send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            log.warning(
                "request_timeout: %s %s: %d body bytes in %ss", scope["method"], scope["path"], seen, self.read_seconds
            )
            response = error_response(
                408, "request_timeout", f"the request body did not arrive within {self.read_seconds} seconds"
            )
            response.headers["connection"] = "close"  # the rest of that body is not waited for
            await response(scope, receive, send)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            result: dict[str, Any] = await receive()
            return result

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = error_response(413, "body_too_large", f"the request body is over {self.limit} bytes")
        await response(scope, receive, send)
