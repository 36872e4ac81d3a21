"""The hand-off routes over HTTPS: engineers get the cloud files and hand off the signed manifest (a POST,
recorded in the ledger), and bad requests a 4xx with its code."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from fabguard.ledger.checkpoint import parse_verifier_key
from fabguard.ledger.entry import canonical_json
from fabguard.service.access import tokens
from fabguard.service.core import events
from fabguard.service.ledger import merkle_log
from tests.support import World, new_instance, tested_device

AWS_CODE = "ab" * 32


def _client(world: World, role: str) -> httpx.Client:
    _, secret = tokens.create_token(world.inst, name=f"{role}-1", role=role, actor="test")
    return httpx.Client(
        base_url=world.url,
        verify=ssl.create_default_context(cafile=str(world.root_ca)),
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One server for the module: the cases only add hand-off events, which none of them counts."""
    tmp = tmp_path_factory.mktemp("handoff-api")
    inst = new_instance(tmp / "home")
    w = World.start(inst, tmp)
    yield w
    w.stop()
    inst.close()


@pytest.fixture(scope="module")
def engineer(world: World) -> Iterator[httpx.Client]:
    with _client(world, "engineer") as c:
        yield c


@pytest.fixture(scope="module")
def auditor(world: World) -> Iterator[httpx.Client]:
    with _client(world, "auditor") as c:
        yield c


def _cn(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_engineer_gets_the_aws_and_azure_files(engineer: httpx.Client) -> None:
    r = engineer.post(
        "/api/v1/handoff/aws",
        json={"ca": "issuing", "registration_code": AWS_CODE, "role_arn": "arn:aws:iam::123456789012:role/JITP"},
    )
    assert r.status_code == 201, r.text
    files = r.json()["files"]
    assert _cn(files["verification.pem"]) == AWS_CODE
    assert isinstance(json.loads(files["registration-config.json"])["templateBody"], str)
    r = engineer.post("/api/v1/handoff/azure", json={"ca": "issuing", "verification_code": "ABCDEF0123"})
    assert r.status_code == 201 and _cn(r.json()["files"]["verification.pem"]) == "ABCDEF0123"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("aws", {"ca": "issuing", "registration_code": ""}, 422, "registration_code_invalid"),
        ("aws", {"ca": "issuing", "registration_code": "ab" * 31 + "zz"}, 422, "registration_code_invalid"),
        ("aws", {"ca": "nope", "registration_code": AWS_CODE}, 404, "ca_not_found"),
        ("aws", {"ca": "root", "registration_code": AWS_CODE}, 409, "ca_not_issuing"),
        ("aws", {"ca": "issuing", "registration_code": AWS_CODE, "role_arn": "admin"}, 422, "role_arn_invalid"),
        ("aws", {"ca": "issuing", "registration_code": AWS_CODE, "order_id": "po-x"}, 404, "order_not_found"),
        ("azure", {"ca": "issuing", "verification_code": "a,CN=b"}, 422, "verification_code_invalid"),
        ("azure", {"ca": "issuing", "verification_code": "AB", "enrollment_group_id": "-x"}, 422, "dps_name_invalid"),
    ],
)
def test_bad_hand_off_requests_get_their_code_and_are_recorded(
    world: World, engineer: httpx.Client, path: str, body: dict[str, str], status: int, code: str
) -> None:
    r = engineer.post(f"/api/v1/handoff/{path}", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    [last] = events.list_events(world.inst, kind="handoff.refused", after=0, limit=1000)[-1:]
    assert (last["code"], last["detail"]["cloud"]) == (code, path) and str(last["actor"]).startswith("engineer-1 (")


def test_an_auditor_may_not_have_a_ca_sign(auditor: httpx.Client) -> None:
    r = auditor.post("/api/v1/handoff/aws", json={"ca": "issuing", "registration_code": AWS_CODE})
    assert r.status_code == 403


def test_an_engineer_hands_off_the_signed_manifest_as_json_and_csv_each_recorded(
    world: World, engineer: httpx.Client, auditor: httpx.Client
) -> None:
    order = world.order(quota=2)
    fx = world.fixture("fx-1")
    fx.provision(order, "SN-API1", tested_device(fx, "SN-API1").csr_pem())
    _, _, public_key = parse_verifier_key(merkle_log.public_verifier_key(world.inst))

    def recorded() -> list[dict[str, object]]:
        return events.list_events(world.inst, kind="handoff.manifest", after=0, limit=1000)

    before = len(recorded())
    r = engineer.post(f"/api/v1/handoff/manifest/{order}")
    assert r.status_code == 201
    doc = r.json()
    assert [d["serial"] for d in doc["manifest"]["devices"]] == ["SN-API1"]
    public_key.verify(base64.b64decode(doc["signature"]), canonical_json(doc["manifest"]))
    # Signed at a checkpoint taken now, which covers the unit it lists.
    assert doc["manifest"]["checkpoint"]["size"] >= merkle_log.index_of_unit(world.inst, serial="SN-API1") + 1
    r = engineer.post(f"/api/v1/handoff/manifest/{order}", params={"format": "csv"})
    assert r.status_code == 201 and r.headers["content-type"].startswith("text/csv")
    public_key.verify(base64.b64decode(r.headers["X-FabGuard-Signature"]), r.content)
    assert "SN-API1" in r.text
    made = recorded()[before:]
    assert len(made) == 2 and {e["order_id"] for e in made} == {order}
    assert str(made[0]["actor"]).startswith("engineer-1 (")
    assert engineer.post(f"/api/v1/handoff/manifest/{order}", params={"format": "xml"}).json()["error"]["code"] == (
        "invalid_format"
    )
    assert engineer.post("/api/v1/handoff/manifest/po-none").json()["error"]["code"] == "order_not_found"
    assert len(recorded()) == before + 2
    # Handing off is an act recorded in the ledger: not a reader's, and never a GET.
    denied = auditor.post(f"/api/v1/handoff/manifest/{order}")
    assert (denied.status_code, denied.json()["error"]["code"]) == (403, "forbidden")
    read = auditor.get(f"/api/v1/handoff/manifest/{order}")
    assert (read.status_code, read.headers["allow"]) == (405, "POST")
    assert len(recorded()) == before + 2
