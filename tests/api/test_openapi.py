"""The API describes itself: every route is in /openapi.json with its tag."""

from __future__ import annotations

from tests.support import World


def test_openapi_lists_admin_and_fixture_routes(world: World) -> None:
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/orders",
        "/api/v1/orders/{order_id}/quota-changes",
        "/api/v1/quota-changes/{change_id}/approve",
        "/api/v1/fixtures",
        "/api/v1/enroll",
        "/api/v1/test-records",
        "/api/v1/units/provision",
        "/api/v1/units/provision-batch",
        "/api/v1/events",
    ):
        assert path in paths, path
    assert spec["info"]["title"] == "FabGuard"


def test_unknown_route_is_a_json_404(world: World) -> None:
    with world.admin() as http:
        r = http.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_orders_api_shows_live_counts(world: World) -> None:
    order = world.order(quota=3)
    with world.admin() as http:
        body = http.get(f"/api/v1/orders/{order}").json()
    assert (body["quota"], body["used"], body["remaining"], body["refused"]) == (3, 0, 3, {})
