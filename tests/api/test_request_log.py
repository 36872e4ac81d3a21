"""Logs an operator can search: one line a request, as JSON (one object a line) or text, with the time,
level, request id (the client's ``X-Request-ID`` if sane, else a new one, echoed either way), route
template, status, duration, who (person, token or fixture) and the refusal code; FabGuard's own records
logged while serving a request carry its id. Over the real HTTPS server, with real fixtures."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from fabguard.api.logs import ACCESS_LOGGER, JsonFormatter, TextFormatter, WithRequestId
from fabguard.api.redaction import RedactSecrets
from fabguard.fixture.client import FabGuardClientError, tls_context
from tests.support import World, tested_device


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What the server logs while the test runs, as JSON and as text (the handlers ``serve`` installs)."""
    as_json, as_text = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in (
        (as_json, JsonFormatter()),
        (as_text, TextFormatter("%(asctime)s %(levelprefix)s %(name)s: %(message)s", use_colors=False)),
    ):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(RedactSecrets())
        handler.addFilter(WithRequestId())
        handlers.append(handler)
    loggers = [logging.getLogger(ACCESS_LOGGER), logging.getLogger("fabguard.service.access.tokens")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)
        for handler in handlers:
            lg.addHandler(handler)
    try:
        yield as_json, as_text
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
            for handler in handlers:
                lg.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _request(lines: list[dict[str, object]], request_id: str) -> dict[str, object]:
    found = [line for line in lines if line["logger"] == ACCESS_LOGGER and line.get("request_id") == request_id]
    assert len(found) == 1, (request_id, lines)
    return found[0]


def _settled(stream: io.StringIO, request_ids: list[str]) -> list[dict[str, object]]:
    """The lines once every request's own line is there (it is written after the answer is sent)."""
    deadline = time.monotonic() + 10
    while True:
        lines = _lines(stream)
        logged = {line.get("request_id") for line in lines if line["logger"] == ACCESS_LOGGER}
        if set(request_ids) <= logged or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_each_request_is_one_json_line_with_who_route_status_and_refusal_code(
    world: World, captured: tuple[io.StringIO, io.StringIO]
) -> None:
    as_json, as_text = captured
    order = world.order(quota=1)
    client = world.fixture("fx-1")
    first, second = tested_device(client, "SN-LOG-1"), tested_device(client, "SN-LOG-2")
    client.provision(order, first.serial, first.csr_pem())
    with pytest.raises(FabGuardClientError):
        client.provision(order, second.serial, second.csr_pem())  # over quota

    with world.admin() as http:
        mine = http.get(f"/api/v1/orders/{order}", headers={"X-Request-ID": "trace-4711"})
        hostile = http.get("/api/v1/orders", headers={"X-Request-ID": 'x" level=error\xe9'.encode("latin-1")})
    with httpx.Client(base_url=world.url, verify=tls_context(client.credentials), timeout=10) as http:
        unknown = http.get("/api/v1/orders", headers={"Authorization": "Bearer fgt_not-a-real-token-at-all"})
    assert mine.headers["x-request-id"] == "trace-4711"
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"]), "a hostile id is replaced, not echoed"
    assert re.fullmatch(r"[0-9a-f]{32}", unknown.headers["x-request-id"])

    ids = [answer.headers["x-request-id"] for answer in (mine, hostile, unknown)]
    lines = _settled(as_json, ids)  # every line is one JSON object
    read = _request(lines, "trace-4711")
    assert read["level"] == "info" and read["method"] == "GET" and read["status"] == 200
    assert read["route"] == "/api/v1/orders/{order_id}" and read["path"] == f"/api/v1/orders/{order}"
    assert str(read["who"]).split(":")[0] in ("person", "token") and read["who_name"] == "admin"
    assert "code" not in read and isinstance(read["duration_ms"], float) and read["duration_ms"] > 0
    assert datetime.fromisoformat(str(read["time"]).replace("Z", "+00:00")).tzinfo is not None

    refused = _request(lines, unknown.headers["x-request-id"])
    assert (refused["status"], refused["code"], refused.get("who")) == (401, "unauthorized", None)
    # FabGuard's own record of that refusal carries the request's id.
    told = [
        line for line in lines if line["logger"] != ACCESS_LOGGER and line.get("request_id") == refused["request_id"]
    ]
    assert told and "unknown API token" in str(told[0]["message"]), lines

    provisioned = [line for line in lines if line.get("route") == "/api/v1/units/provision"]
    assert [(line["status"], line.get("code"), line["who"]) for line in provisioned] == [
        (201, None, "fixture:fx-1"),
        (409, "quota_exhausted", "fixture:fx-1"),
    ], provisioned
    assert _request(lines, hostile.headers["x-request-id"])["status"] == 200

    text = as_text.getvalue()
    assert re.search(
        rf'\d{{4}}-\d\d-\d\dT[\d:.]+Z INFO: +fabguard.access: 127.0.0.1 - "GET /api/v1/orders/{order} HTTP/1.1" 200 '
        r"[\d.]+ms id=trace-4711 who=(person|token):\S+ code=-",
        text,
    ), text
    assert "code=quota_exhausted" in text and "who=fixture:fx-1" in text
    assert "fgt_not-a-real" not in text + as_json.getvalue()
