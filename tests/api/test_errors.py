"""The API answers every FabGuardError with its own status and code, whatever its class."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import pkgutil

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

import fabguard
from fabguard.api.errors import install_error_handlers
from fabguard.domain.errors import FabGuardError, Refusal, Unavailable, is_declared
from fabguard.firmware.policy import FirmwareRefusal
from fabguard.pki.matter import AttestationProfileError
from tests.support import World

# The classes whose constructor is not (message): what to build each with.
_ARGUMENTS: dict[type[FabGuardError], tuple[str, ...]] = {
    Refusal: ("quota_exhausted", "boom"),
    FirmwareRefusal: ("release_withdrawn", "boom"),
    AttestationProfileError: ("dac.vid", "boom"),
}


def _error_classes() -> list[type[FabGuardError]]:
    found: set[type[FabGuardError]] = set()
    for info in pkgutil.walk_packages(fabguard.__path__, "fabguard."):
        module = importlib.import_module(info.name)
        found |= {
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, FabGuardError) and obj is not FabGuardError
        }
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


ERRORS = [cls(*_ARGUMENTS.get(cls, ("boom",))) for cls in _error_classes()]


def _get_raising(error: BaseException) -> httpx.Response:
    """GET a route that raises ``error``, through the error handlers the real app installs."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise")
    def _raise() -> None:
        raise error

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            return await http.get("/raise")

    return asyncio.run(get())


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_fabguard_error_answers_with_its_own_status_and_code(
    error: FabGuardError, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="fabguard.api"):
        response = _get_raising(error)
    assert is_declared(error.code), error.code
    assert (response.status_code, response.json()) == (error.status, error.to_dict())
    # The server's own failures stay in the log (with the traceback); a 4xx is the client's business,
    # and an outage (503) is a warning line, not a bug's traceback.
    assert any(r.exc_info for r in caplog.records) == (error.status >= 500 and not isinstance(error, Unavailable))


def test_an_outage_is_a_warning_line_with_a_hint_to_send_again(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fabguard.api"):
        response = _get_raising(Unavailable("the database is unavailable (gone); send the request again"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.WARNING, None)]


def test_every_error_class_of_fabguard_is_exercised_above() -> None:
    assert len(ERRORS) >= 19
    assert {type(e) for e in ERRORS} >= set(_ARGUMENTS)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 406, 409, 413, 415, 429, 501, 503])
def test_an_http_level_error_keeps_its_status_with_a_declared_code(status: int) -> None:
    response = _get_raising(StarletteHTTPException(status, "no"))
    body = response.json()
    assert response.status_code == status
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert is_declared(body["error"]["code"]), body


def test_an_unexpected_error_is_a_500_that_closes_its_connection_so_the_next_request_is_answered(
    world: World,
) -> None:
    """Starlette re-raises an unexpected error after its 500 is sent, and uvicorn then closes the connection:
    a 500 that did not say ``Connection: close`` left a keep-alive client sending its next request into a
    closed connection ("Server disconnected without sending a response"), found by
    tests/test_walk_across_features.py when an answer did not fit its model."""
    with world.inst.db.transaction() as s:  # a row the code cannot read: an unexpected error, not a refusal
        s.execute(text("UPDATE events SET detail = '{not json' WHERE seq = (SELECT max(seq) FROM events)"))
    with world.admin() as admin:
        for _ in range(2):
            broken = admin.get("/api/v1/events")
            assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal_error"
            assert broken.headers["connection"] == "close"
            assert admin.get("/api/v1/products").status_code == 200  # the same client, its next request
