"""Fields our own parsers read as sent are typed in /openapi.json, yet a value of the wrong JSON type still gets
the domain code it always had (``api/documents.py``'s ``Published``), never pydantic's ``invalid_request``.

Each case checks both faces on one running server: the published schema of the field says one type, the
value sent is of another, and the answer is our refusal, with its status and code (a unit's refusal is
recorded in the ledger, as before). ``tests/api/test_bad_input.py`` keeps the wider catalogue of broken
values for provisioning and test records.
"""

from __future__ import annotations

import base64
import random
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fabguard.domain.issuance import AttestationPolicy
from fabguard.domain.values import ProductId
from fabguard.fixture.client import FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.core import events
from fabguard.service.provisioning import attestation
from tests.support import World, tested_device


def schema_of(spec: dict[str, Any], component: str, *path: str) -> dict[str, Any]:
    """The schema of ``component``'s field at ``path`` (through arrays' items and $refs)."""
    components = spec["components"]["schemas"]
    schema: dict[str, Any] = components[component]
    for step in path:
        schema = schema["items"] if step == "[]" else schema["properties"][step]
        if "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def types_of(schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema admits ("object" for a $ref'd model)."""
    options = schema.get("anyOf", [schema])
    return {o.get("type", "object") for o in options}


@pytest.fixture
def fx(world: World) -> FixtureClient:
    return world.fixture("fx-1")


@pytest.fixture
def fixture_http(world: World, fx: FixtureClient) -> Iterator[httpx.Client]:
    """The fixture's mutual-TLS session, sending bodies as they are."""
    tls = ssl.create_default_context(cafile=str(fx.credentials.ca))
    tls.load_cert_chain(str(fx.credentials.cert), str(fx.credentials.key))
    with httpx.Client(base_url=world.url, verify=tls, timeout=60) as http:
        yield http


def test_a_wrongly_typed_provisioning_field_gets_its_domain_code_and_is_recorded(
    world: World, fixture_http: httpx.Client
) -> None:
    order = world.order(quota=5)
    device = SimulatedDevice("SN-TYPED-1")
    csr = device.csr_pem()
    with world.admin() as admin:
        spec = admin.get("/openapi.json").json()
    assert types_of(schema_of(spec, "ProvisionIn", "serial")) == {"string"}
    assert types_of(schema_of(spec, "ProvisionIn", "order_id")) == {"string"}
    assert types_of(schema_of(spec, "ProvisionIn", "csr")) == {"string"}
    assert types_of(schema_of(spec, "ProvisionIn", "attestation")) == {"object", "null"}
    cases = [
        ({"order_id": order, "serial": 1234, "csr": csr}, 400, "serial_invalid"),
        ({"order_id": 42, "serial": "SN-TYPED-1", "csr": csr}, 404, "order_not_found"),
        ({"order_id": order, "serial": "SN-TYPED-1", "csr": 42}, 400, "csr_invalid"),
    ]
    for body, status, code in cases:
        before = events.list_events(world.inst, kind="unit.refused")
        r = fixture_http.post("/api/v1/units/provision", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
        after = events.list_events(world.inst, kind="unit.refused")
        assert [e["code"] for e in after[len(before) :]] == [code]
    # A batch answers each unit on its own (a unit without string fields is its own invalid request, as
    # parsing.batch_unit_request always said), never the whole request refused by pydantic.
    assert types_of(schema_of(spec, "ProvisionBatchIn", "units", "[]", "serial")) == {"string"}
    r = fixture_http.post(
        "/api/v1/units/provision-batch", json={"order_id": order, "units": [{"serial": 5, "csr": csr}]}
    )
    assert r.status_code == 200, r.text
    assert [(x["status"], x["error"]["code"]) for x in r.json()["results"]] == [("refused", "invalid_request")]


def test_a_wrongly_typed_attestation_is_attestation_invalid(
    world: World, fx: FixtureClient, fixture_http: httpx.Client
) -> None:
    attestation.set_policy(world.inst, ProductId("sensor"), AttestationPolicy.REQUIRED, actor="test")
    order = world.order(quota=5)
    device = tested_device(fx, "SN-TYPED-2")
    with world.admin() as admin:
        spec = admin.get("/openapi.json").json()
    tpm = schema_of(spec, "TpmCertifyEvidence")
    assert tpm["properties"]["format"]["const"] == "tpm2-certify" and tpm["additionalProperties"] is False
    for evidence in ("tpm2-certify", ["not", "an", "object"], {"format": "tpm2-certify", "attest": 5}):
        body = {"order_id": order, "serial": "SN-TYPED-2", "csr": device.csr_pem(), "attestation": evidence}
        r = fixture_http.post("/api/v1/units/provision", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "attestation_invalid"), r.text


def test_a_wrongly_typed_test_record_gets_test_record_codes(world: World, fixture_http: httpx.Client) -> None:
    with world.admin() as admin:
        spec = admin.get("/openapi.json").json()
    record_schema = schema_of(spec, "OpenHtfRecord")
    assert record_schema["properties"]["dut_id"]["type"] == "string"
    assert record_schema["properties"]["start_time_millis"]["type"] == "integer"
    body = spec["paths"]["/api/v1/test-records"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/OpenHtfRecord"}
    good = openhtf_record("SN-TYPED-3", "fx-1", fail=False, rng=random.Random(3), now_ms=1_700_000_000_000)
    for field, value, status, code in (
        ("dut_id", 12345, 400, "serial_invalid"),
        ("start_time_millis", "yesterday", 422, "test_record_invalid"),
        ("phases", "PASS", 422, "test_record_invalid"),
    ):
        r = fixture_http.post("/api/v1/test-records", json={**good, field: value})
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (field, r.text)
        batch = fixture_http.post("/api/v1/test-records/batch", json={"records": [{**good, field: value}]})
        assert batch.status_code == 200, batch.text
        assert [x["error"]["code"] for x in batch.json()["results"]] == [code]


def test_wrongly_typed_documents_get_their_codes(world: World) -> None:
    """A site agent's request and sync package, and an uploaded SBOM, each with a field of the wrong type."""
    order = world.order(quota=5)
    with world.admin() as admin:
        spec = admin.get("/openapi.json").json()
        assert types_of(schema_of(spec, "AgentRequestDocument", "hostnames")) == {"array"}
        r = admin.post(
            f"/api/v1/orders/{order}/leases",
            json={"units": 1, "expires_in_minutes": 60, "agent_request": {"site_id": "cm-a", "hostnames": 5}},
        )
        assert (r.status_code, r.json()["error"]["code"]) == (422, "agent_request_invalid"), r.text
        assert types_of(schema_of(spec, "SyncPackageDocument", "entries")) == {"array"}
        package = {"format": "fabguard-agent-sync-v1", "lease_id": "lease-x", "checkpoint": "", "entries": 5}
        r = admin.post("/api/v1/leases/lease-x/sync", json={**package, "certificates": {}})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "lease_sync_invalid"), r.text
        assert types_of(schema_of(spec, "CycloneDxSbom", "specVersion")) == {"string"}
        sbom = {"bomFormat": "CycloneDX", "specVersion": 1.6, "version": 1}
        image = base64.b64encode(b"an image").decode()
        r = admin.post(
            "/api/v1/firmware/releases", json={"product_id": "sensor", "version": "1.0.0", "image": image, "sbom": sbom}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (422, "uploaded_sbom_invalid"), r.text
