"""The line's hot paths are tried first (Starlette matches routes in order; ~100 others used to come before
them), and moving them first changed nothing: no other route matches any of their paths and methods."""

from __future__ import annotations

import importlib
import pkgutil

from starlette.routing import Match

import fabguard.api.routes as routes_package
from fabguard.api.app import create_app
from fabguard.api.routes import field, station
from fabguard.service.core.instance import Instance


def _every_route() -> list[tuple[str, object]]:
    found = []
    for info in pkgutil.iter_modules(routes_package.__path__):
        module = importlib.import_module(f"fabguard.api.routes.{info.name}")
        router = getattr(module, "router", None)
        if router is not None:
            found += [(info.name, route) for route in router.routes]
    return found


def test_no_other_route_matches_a_hot_path() -> None:
    every = _every_route()
    hot = [route for module in (station, field) for route in module.router.routes]
    assert hot
    for route in hot:
        for method in route.methods:  # type: ignore[attr-defined]
            scope = {"type": "http", "path": route.path, "method": method, "root_path": ""}  # type: ignore[attr-defined]
            full = [name for name, other in every if other.matches(scope)[0] == Match.FULL]  # type: ignore[attr-defined]
            assert len(full) == 1, (route.path, method, full)  # type: ignore[attr-defined]


def test_the_app_tries_the_hot_paths_first(instance: Instance) -> None:
    app = create_app(instance)
    while not hasattr(app, "router"):  # through RequestLog and BodyLimit to the FastAPI app
        app = app.app
    # FastAPI's own routes (/openapi.json, /docs) first, then the routers in the order they were included.
    included = [getattr(route, "original_router", None) for route in app.router.routes]
    included = [router for router in included if router is not None]
    assert included[:2] == [station.router, field.router]
