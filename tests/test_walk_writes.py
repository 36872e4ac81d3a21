"""The walk's check of write answers (tests/walk_writes.py, used by tests/test_walk_across_features.py) finds
the drifts it is there to find: a body off its model, an undocumented status, an error off the error schema."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fabguard.api.errors import ERROR_SCHEMA
from tests.walk_writes import checked, refused_calls, template_of

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
THING = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}, "additionalProperties": False}
SPEC: dict[str, Any] = {
    "paths": {
        "/things": {
            "post": {
                "requestBody": {"content": {"application/json": {}}},
                "responses": {
                    "201": {"content": {"application/json": {"schema": THING}}},
                    "default": {"content": ERROR},
                },
            }
        },
        "/things/{thing_id}": {
            "delete": {"responses": {"204": {"description": "gone"}, "default": {"content": ERROR}}}
        },
        "/things/special": {"delete": {"responses": {"200": {"description": "ok"}, "default": {"content": ERROR}}}},
        "/things/{thing_id}/act": {
            "post": {"responses": {"200": {"description": "ok"}, "default": {"content": ERROR}}}
        },
    },
    "components": {"schemas": {"Error": ERROR_SCHEMA}},
}


def _answer(method: str, path: str, status: int, **kw: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request(method, f"https://fabguard.test{path}"), **kw)


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        (_answer("POST", "/things", 201, json={"id": "t1"}), None),
        (_answer("POST", "/things", 409, json={"error": {"code": "thing_exists", "message": "t1"}}), None),
        (_answer("DELETE", "/things/t1", 204), None),
        (_answer("POST", "/things", 201, json={"id": 1}), "does not fit its schema at ['id']"),
        (_answer("POST", "/things", 201, json={"id": "t1", "extra": 1}), "does not fit its schema"),
        (_answer("POST", "/things", 200, json={"id": "t1"}), "status not in /openapi.json"),
        (_answer("POST", "/things", 409, json={"detail": "t1 exists"}), "does not fit its schema"),
        (_answer("POST", "/things", 500, json={"error": {"code": "internal_error", "message": "x"}}), "-> 500"),
        (_answer("DELETE", "/things/t1", 204, content=b"null"), "a body"),
        (
            _answer("DELETE", "/things/t1", 204, headers={"content-type": "application/json"}),
            "of type application/json",
        ),
        (_answer("PUT", "/things", 200, json={}), "no route of /openapi.json"),
    ],
)
def test_a_write_answer_is_checked_against_its_route_and_status(answer: httpx.Response, wrong: str | None) -> None:
    problem = checked(SPEC, answer)
    assert problem is None if wrong is None else (problem is not None and wrong in problem), problem


def test_a_literal_route_is_preferred_to_a_parameters() -> None:
    assert template_of(SPEC, "delete", "/things/special") == "/things/special"
    assert template_of(SPEC, "delete", "/things/t1") == "/things/{thing_id}"
    assert template_of(SPEC, "post", "/things/t1/act") == "/things/{thing_id}/act"


def test_the_refused_calls_never_send_a_call_that_would_act() -> None:
    calls = refused_calls(SPEC, {"thing_id": ["t1"]})
    assert sorted(calls, key=str) == sorted(
        [("post", "/things", []), ("delete", "/things/none-such", None), ("post", "/things/none-such/act", None)],
        key=str,
    )  # /things/special takes no parameter and no body: calling it would act, so it is left out
