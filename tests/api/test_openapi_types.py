"""Every JSON answer and every JSON request body is described (issue 26 item 10): /openapi.json gives each
operation's 2xx JSON body a schema with its fields (a model), never an untyped object, and each request
body's schema is typed all the way down (through its $refs), so a generated client gets typed results and
typed arguments.

A route's answer is typed by its ``response_model`` from ``fabguard.api.responses`` (matching what the
service returns). A request field that our own parsers read as sent (so a broken value gets our domain code,
not pydantic's ``invalid_request``) is published with its shape by ``api.documents.Published``; a test below
sends such fields with the wrong JSON type and expects the codes they always had.
"""

from __future__ import annotations

from typing import Any

from tests.support import World


def untyped(schema: dict[str, Any]) -> bool:
    """An object anything fits (``{}``, ``additionalProperties: true`` without properties), or a list of them."""
    schema = {k: v for k, v in schema.items() if k not in ("title", "description")}
    if "$ref" in schema:
        return False
    if schema.get("type") == "array":
        return untyped(schema.get("items", {}))
    if "anyOf" in schema:
        return any(untyped(s) for s in schema["anyOf"])
    return not schema or (
        schema.get("type") == "object"
        and not schema.get("properties")
        and schema.get("additionalProperties", True) in (True, {})
    )


def untyped_operations(spec: dict[str, Any]) -> set[str]:
    found = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith("2") and schema is not None and untyped(schema):
                    found.add(operation["operationId"])
    return found


def test_the_check_finds_untyped_answers() -> None:
    assert untyped({}) and untyped({"title": "Response"}) and untyped({"type": "object", "additionalProperties": True})
    assert untyped({"type": "array", "items": {"type": "object", "additionalProperties": True}})
    assert not untyped({"$ref": "#/components/schemas/Order"})
    assert not untyped({"type": "array", "items": {"$ref": "#/components/schemas/Order"}})
    assert not untyped({"type": "object", "additionalProperties": {"type": "string"}})


def test_json_answers_are_typed(world: World) -> None:
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
    assert untyped_operations(spec) == set(), "untyped answers: give these routes a response_model"


_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated"}


def untyped_parts(
    schema: dict[str, Any], components: dict[str, Any], path: str = "", seen: frozenset[str] = frozenset()
) -> list[str]:
    """The places in ``schema`` (followed through ``$ref`` into ``components``) that take anything: ``{}``, an
    object without properties whose other keys may be anything, or such a thing inside an array, a union
    or a map's values."""
    schema = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else untyped_parts(components[name], components, f"{path}<{name}>", seen | {name})
    if not schema:
        return [path or "(body)"]
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(schema.get(key, [])):
            found += untyped_parts(option, components, f"{path}|{i}", seen)
    if schema.get("type") == "array":
        found += untyped_parts(schema.get("items", {}), components, f"{path}[]", seen)
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", not properties)
        if not properties and extra in (True, {}):
            return [*found, f"{path} (any object)"]
        for name, sub in properties.items():
            found += untyped_parts(sub, components, f"{path}.{name}", seen)
        if isinstance(extra, dict) and extra:
            found += untyped_parts(extra, components, f"{path}.*", seen)
    return found


def untyped_request_bodies(spec: dict[str, Any]) -> dict[str, list[str]]:
    components = spec.get("components", {}).get("schemas", {})
    found = {}
    for operations in spec["paths"].values():
        for operation in operations.values():
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                parts = untyped_parts(content.get("schema", {}), components)
                if parts:
                    found[f"{operation['operationId']} ({media})"] = parts
    return found


def test_the_check_finds_untyped_request_fields() -> None:
    components = {
        "Open": {"type": "object", "properties": {"x": {"title": "X"}}},
        "Closed": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False},
        "Loop": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/c/Loop"}, {"type": "null"}]}}},
    }
    assert untyped_parts({"$ref": "#/c/Open"}, components) == ["<Open>.x"]
    assert untyped_parts({"type": "array", "items": {"$ref": "#/c/Closed"}}, components) == []
    assert untyped_parts({"$ref": "#/c/Loop"}, components) == []
    assert untyped_parts({"type": "object", "additionalProperties": True}, components) == [" (any object)"]
    assert untyped_parts({"type": "object", "additionalProperties": {}}, components) == [" (any object)"]
    assert untyped_parts({"anyOf": [{"type": "string"}, {}]}, components) == ["|1"]
    assert untyped_parts({"type": "object", "additionalProperties": {"type": "string"}}, components) == []
    assert untyped_parts({"type": "array", "items": {"type": "object"}}, components) == ["[] (any object)"]


def test_json_request_bodies_are_typed_all_the_way_down(world: World) -> None:
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
    assert untyped_request_bodies(spec) == {}
