"""The API describes itself: every route is in /openapi.json with its tag."""

from __future__ import annotations

import re

from fabguard.api.errors import ERROR_SCHEMA
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
        "/api/v1/products/{product_id}/royalty-rate",
        "/api/v1/royalties/statement",
        "/api/v1/units/{serial}/licences",
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


def test_openapi_describes_the_error_body_every_operation_answers_with(world: World) -> None:
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
        refused = http.post("/api/v1/orders", json={"quota": "many"})
    schemas = spec["components"]["schemas"]
    assert schemas["Error"] == ERROR_SCHEMA
    assert "HTTPValidationError" not in schemas  # FastAPI's own 422 body, which this API never sends
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if s == "default" or s >= "4"}
            assert "default" in errors, (method, path)
            if (method, path) == ("get", "/readyz"):  # its 503 is a report (each check's answer), not an error
                readiness = {"$ref": "#/components/schemas/Readiness"}
                assert errors.pop("503")["content"]["application/json"]["schema"] == readiness
            if path.startswith("/ocsp"):  # a request that does not parse is answered as OCSP says: malformedRequest
                assert set(errors.pop("400")["content"]) == {"application/ocsp-response"}
            for response in errors.values():
                assert response["content"]["application/json"]["schema"] == error_ref, (method, path)
    # What the schema says is what an error answer is.
    body = refused.json()
    assert refused.status_code == 422
    assert set(body) == set(ERROR_SCHEMA["required"]) == set(ERROR_SCHEMA["properties"])
    detail = ERROR_SCHEMA["properties"]["error"]
    assert set(body["error"]) == set(detail["required"]) == set(detail["properties"])
    assert all(isinstance(body["error"][k], str) for k in detail["properties"])


def test_openapi_names_the_media_types_of_answers_that_are_not_json(world: World) -> None:
    with world.admin() as http:
        paths = http.get("/openapi.json").json()["paths"]
    expected = {
        ("get", "/.well-known/est/cacerts"): {"application/pkcs7-mime"},
        ("post", "/.well-known/est/{label}/simpleenroll"): {"application/pkcs7-mime; smime-type=certs-only"},
        ("get", "/.well-known/est/csrattrs"): {"application/csrattrs"},
        ("get", "/crl/{ca}.crl"): {"application/pkix-crl"},
        ("get", "/ca/{ca}.crt"): {"application/pkix-cert"},
        ("get", "/ocsp/{ocsp_request}"): {"application/ocsp-response"},
        ("post", "/ocsp"): {"application/ocsp-response"},
        ("get", "/metrics"): {"text/plain"},
        ("get", "/api/v1/stream"): {"text/event-stream"},
        ("get", "/api/v1/ledger/checkpoint"): {"application/json", "text/plain"},
        ("post", "/api/v1/ledger/checkpoint"): {"application/json", "text/plain"},
        ("get", "/api/v1/reports/reconciliation"): {"application/json", "text/csv", "application/pdf"},
        ("get", "/api/v1/royalties/statement"): {"application/json", "text/csv", "application/pdf"},
        ("post", "/api/v1/firmware/fetch"): {"application/vnd.fabguard.firmware-package"},
    }
    for (method, path), media in expected.items():
        assert set(paths[path][method]["responses"]["200"]["content"]) == media, (method, path)
    # Handing off a device manifest is recorded in the ledger: a POST answering 201, never a GET (issue 23).
    manifest = paths["/api/v1/handoff/manifest/{order_id}"]
    assert set(manifest) == {"post"}
    assert set(manifest["post"]["responses"]["201"]["content"]) == {"application/json", "text/csv"}
    # EST reads its body itself: the document still says what it is.
    body = paths["/.well-known/est/simpleenroll"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/pkcs10"}
    assert set(paths["/ocsp"]["post"]["requestBody"]["content"]) == {"application/ocsp-request"}
    # What the server sends is what the document says.
    with world.admin() as http:
        assert http.get("/.well-known/est/csrattrs").headers["content-type"] == "application/csrattrs"
        assert http.get("/metrics").headers["content-type"].split(";")[0] == "text/plain"


def test_docs_work_offline_from_assets_the_server_ships(world: World) -> None:
    with world.admin() as http:
        page = http.get("/docs")
        assert page.status_code == 200
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""", page.text)
        urls = [a or b for a, b in refs]
        assert urls and not [u for u in urls if "://" in u or u.startswith("//")], urls
        assert "cdn" not in page.text.lower() and 'validatorUrl": null' in page.text
        for url in urls:
            asset = http.get(url)
            assert asset.status_code == 200, url
        assert "SwaggerUIBundle" in http.get("/static/vendor/swagger/swagger-ui-bundle.js").text
        assert http.get("/static/vendor/swagger/LICENSE").status_code == 200


READABLE_ID = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)+")  # snake_case, at least two words: verb_noun
PATH_FRAGMENTS = ("api_v1", "well_known", "__")
METHOD_SUFFIXES = ("_get", "_post", "_put", "_patch", "_delete")


def test_every_operation_has_a_readable_unique_id(world: World) -> None:
    """What a client generator names its functions: ``list_cas``, not ``list_cas_api_v1_cas_get``."""
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) > 100
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, duplicates
    unreadable = [i for i in ids if not READABLE_ID.fullmatch(i) or any(f in i for f in PATH_FRAGMENTS)]
    assert not unreadable, unreadable
    assert not [i for i in ids if i.endswith(METHOD_SUFFIXES)]
    assert {"list_cas", "approve_release", "approve_request", "ledger_checkpoint"} <= set(ids)
