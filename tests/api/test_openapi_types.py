"""Every JSON answer is described: /openapi.json gives each operation's 2xx JSON body a schema with its fields
(a model), never an untyped object, so a generated client gets typed results (issue 26 item 10).

``STILL_UNTYPED`` lists the operations not converted yet; it only shrinks. Convert one by giving its route a
``response_model`` from ``fabguard.api.responses`` (matching what the service returns) and remove it here.
"""

from __future__ import annotations

from typing import Any

from tests.support import World

STILL_UNTYPED = frozenset(
    {
        "product_identities",  # a product's identity pools (service/catalog/identity_pools.py): the declared
        "set_product_identities",  # pool (serial format, MAC block, Matter settings) and its counters
        "get_lease_bundle",  # the signed bundle 'fabguard agent init' reads (service/agent/quota_leases.py)
        "release_sbom",  # a CycloneDX document, as the firmware's SBOM says
        "stats_order",  # the dashboard's figures (service/analytics/dashboard_queries.py): nested series,
        "stats_overview",  # yields, burn-down and Pareto rows
        "stats_production",
        "stats_stations",  # the station and line view, a measurement's distribution and a failing step's units
        "stats_distribution",  # (service/analytics/stations.py, record_samples.py)
        "stats_failing_units",
        "search_units",  # unit search and a serial's whole history (service/genealogy/unit_history.py)
        "unit_genealogy",
        "sign_in",  # the dashboard's browser session (api/routes/session.py)
        "who_am_i",
    }
)


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


def test_json_answers_are_typed_but_for_the_listed_ones(world: World) -> None:
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
    found = untyped_operations(spec)
    assert found - STILL_UNTYPED == set(), "newly untyped: give these routes a response_model"
    assert STILL_UNTYPED - found == set(), "typed now: remove these from STILL_UNTYPED"
