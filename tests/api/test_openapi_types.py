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

from collections.abc import Mapping
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
    schema: dict[str, Any],
    components: dict[str, Any],
    path: str = "",
    seen: frozenset[str] = frozenset(),
    open_fields: Mapping[tuple[str, str], str] | None = None,
    owner: str = "",
) -> list[str]:
    """The places in ``schema`` (followed through ``$ref`` into ``components``) that take anything: ``{}``, an
    object without properties whose other keys may be anything, or such a thing inside an array, a union
    or a map's values. A field named in ``open_fields`` (``(component, field)``) is not looked into."""
    schema = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return untyped_parts(components[name], components, f"{path}<{name}>", seen | {name}, open_fields, name)
    if not schema:
        return [path or "(body)"]
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(schema.get(key, [])):
            found += untyped_parts(option, components, f"{path}|{i}", seen, open_fields, owner)
    if schema.get("type") == "array":
        found += untyped_parts(schema.get("items", {}), components, f"{path}[]", seen, open_fields, owner)
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", not properties)
        if not properties and extra in (True, {}):
            return [*found, f"{path} (any object)"]
        for name, sub in properties.items():
            if (owner, name) not in (open_fields or {}):
                found += untyped_parts(sub, components, f"{path}.{name}", seen, open_fields, owner)
        if isinstance(extra, dict) and extra:
            found += untyped_parts(extra, components, f"{path}.*", seen, open_fields, owner)
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


# The only open places in the answers: documents whose shape is one per kind, or signed as they are.
OPEN_IN_ANSWERS = {
    ("Approval", "parameters"): "an act's parameters: one typed shape per kind of act (service/approvals/registry.py)",
    ("Approval", "result"): "what carrying out the act answered: one shape per kind of act",
    ("PendingToken", "parameters"): "an Approval's (a token waiting for a second person)",
    ("PendingToken", "result"): "an Approval's",
    ("LedgerEvent", "detail"): "what an event records: one shape per event kind (dozens, more with each feature)",
    ("LedgerEntry", "detail"): "the same event detail, in a unit's genealogy",
    ("SignedReport", "report"): "a reconciliation report or royalty statement, signed as canonical JSON as it is",
    ("SignedManifest", "manifest"): "a cloud hand-off manifest, signed as canonical JSON as it is",
    ("Release", "manifest"): "the signed firmware release manifest, which devices verify as it is",
}


def untyped_answers(spec: dict[str, Any]) -> dict[str, list[str]]:
    components = spec.get("components", {}).get("schemas", {})
    found: dict[str, list[str]] = {}
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith("2") and schema is not None:
                    parts = untyped_parts(schema, components, open_fields=OPEN_IN_ANSWERS)
                    if parts:
                        found[f"{operation['operationId']} ({status})"] = parts
    return found


def test_json_answers_are_typed_all_the_way_down_but_for_named_documents(world: World) -> None:
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
    assert untyped_answers(spec) == {}
    components = spec["components"]["schemas"]
    for component, field in OPEN_IN_ANSWERS:
        assert field in components[component]["properties"], "an open field that no longer exists"
