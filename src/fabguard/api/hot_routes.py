"""The line's hot path without FastAPI's dependency and validation layers (ADR 0021).

``POST /api/v1/units/provision`` is served by a plain Starlette route placed before FastAPI's: it reads the
body, and when it is what nearly every request is (``Content-Type: application/json``, a JSON object that
``ProvisionIn`` validates) it authenticates the fixture (``deps.fixture_of``), parses and decides the unit
exactly as ``routes.station.provision_unit`` does (``routes.station.unit_answer``, the same code), and
answers. Any other request (another content type, a body that is not JSON or does not validate) is handed,
as it came, to the routes after this one, so FastAPI's route answers it as it always did: the error
answers for bad input are FastAPI's own, by construction. FastAPI's route stays for /openapi.json.

Around it nothing changes: the body limit and the request log are outer ASGI layers, errors raised here
go to the app's exception handlers (Starlette's ``request_response``), and the request's route template
(``scope["route"].path``, what the log and the metrics read) is the same string.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from fabguard.api.deps import fixture_of
from fabguard.api.routes.station import unit_answer
from fabguard.api.schemas import ProvisionIn

# Set on a request's scope once its lean route has handed it on, so routing passes that route by.
HANDED_ON = "fabguard.handed_on"
_JSON = "application/json"


class LeanRoute(Route):
    """A POST route tried before FastAPI's at the same path: it matches nothing else (another method, or a
    request it handed on), so a 405, a redirect or a 404 is decided by the routes after it, as before."""

    def __init__(self, path: str, endpoint: Any) -> None:
        super().__init__(path, endpoint, methods=["POST"], include_in_schema=False)

    def matches(self, scope: Any) -> tuple[Match, Any]:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get(HANDED_ON):
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is Match.FULL:
            child["route"] = self  # the template the request log and metrics name (FastAPI's routes do the same)
        return match, child


class HandOn(Response):
    """Not an answer: the request, its body replayed, routed again past the lean route (to FastAPI's)."""

    def __init__(self, request: Request, body: bytes) -> None:
        super().__init__()
        self.router = request.app.router
        self.request_body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope[HANDED_ON] = True
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": self.request_body, "more_body": False}
            message: dict[str, Any] = await receive()
            return message

        await self.router(scope, replay, send)


def _provision_body(request: Request, body: bytes) -> ProvisionIn | None:
    """The body as FastAPI's route would have it, when it is a JSON object that validates; else None."""
    if request.headers.get("content-type") != _JSON:
        return None  # FastAPI decides what another content type means
    try:
        return ProvisionIn.model_validate(json.loads(body))
    except Exception:  # not JSON, not UTF-8, too deep, invalid, or anything else: FastAPI answers it
        return None


async def provision_unit(request: Request) -> Response:
    body = await request.body()
    parsed = _provision_body(request, body)
    if parsed is None:
        return HandOn(request, body)
    fixture = await fixture_of(request)
    answer = await unit_answer(
        request, request.app.state.instance, fixture, parsed, request.headers.get("idempotency-key")
    )
    if isinstance(answer, JSONResponse):
        return answer
    content, status = answer
    return JSONResponse(content, status_code=status)


def lean_routes() -> list[LeanRoute]:
    """The lean routes, to be placed first in the app's routes (``api.app``)."""
    return [LeanRoute("/api/v1/units/provision", provision_unit)]


__all__ = ["HANDED_ON", "HandOn", "LeanRoute", "lean_routes", "provision_unit"]
