"""Every refused caller is named in the ledger, without its secret: a fixture by its id, a certificate no
fixture holds by its fingerprint (``cert:<16 hex>``), a known token by its id, anything else ``anonymous``."""

from __future__ import annotations

import math
import ssl
import time
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.values import FixtureId
from fabguard.fixture.client import FabGuardClientError
from fabguard.pki import profiles
from fabguard.service.access import tokens
from fabguard.service.catalog import fixtures
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from tests.support import World, tested_device


def _http(world: World, cert: tuple[str, str] | None = None) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(world.root_ca))
    if cert is not None:
        verify.load_cert_chain(*cert)
    return httpx.Client(base_url=world.url, verify=verify, timeout=30)


def test_each_refused_caller_is_one_event_naming_it_without_its_secret(any_world: World) -> None:
    world, inst = any_world, any_world.inst
    order = world.order(quota=5, site="cm-a")
    revoked_fx, other_site = world.fixture("fx-r"), world.fixture("fx-b", site="cm-b")
    device = tested_device(other_site, "SN0001")
    fixtures.revoke_fixture(inst, FixtureId("fx-r"), reason="stolen", actor="test")
    gone, gone_secret = tokens.create_token(inst, name="gone", role="engineer", actor="test")
    tokens.revoke_token(inst, gone.id, actor="test")
    now = inst.clock()
    then = Instance.open(inst.home, clock=lambda: now - timedelta(days=3), migrate=False)
    try:
        lapsed, lapsed_secret = tokens.create_token(
            then, name="lapsed", role="engineer", actor="test", expires_in=timedelta(days=1)
        )
    finally:
        then.close()
    key = ec.generate_private_key(ec.SECP256R1())
    ghost = profiles.fixture_certificate(inst.cas.issuer("station"), key.public_key(), "Acme", "fx-r", "cm-a", now)
    (world.tmp / "ghost.pem").write_bytes(ghost.public_bytes(serialization.Encoding.PEM))
    (world.tmp / "ghost.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ghost_fp = fixtures.cert_fingerprint(ghost.public_bytes(serialization.Encoding.DER))
    start = events.list_events(inst, limit=1_000_000)[-1]["seq"]

    whoami = "/api/v1/fixture/whoami"
    with _http(world) as anonymous:
        assert anonymous.get(whoami).status_code == 401  # no certificate
        assert anonymous.get("/api/v1/orders").status_code == 401  # no token
        for bearer in ("fgt_" + "x" * 43, "not-a-token", gone_secret, lapsed_secret):
            assert anonymous.get("/api/v1/orders", headers={"Authorization": f"Bearer {bearer}"}).status_code == 401
        assert anonymous.get("/api/v1/stream", params={"token": gone_secret}).status_code == 401
    with _http(world, cert=(str(world.tmp / "ghost.pem"), str(world.tmp / "ghost.key"))) as stranger:
        assert stranger.get(whoami).status_code == 401
    with pytest.raises(FabGuardClientError) as revoked:
        revoked_fx.whoami()
    with pytest.raises(FabGuardClientError) as wrong_site:
        other_site.provision(order, "SN0001", device.csr_pem())
    assert (revoked.value.code, wrong_site.value.code) == ("fixture_revoked", "wrong_site")

    refused = [
        (e["kind"], e["code"], e["actor"], e["detail"].get("route"))
        for e in events.list_events(inst, after=start, limit=1_000)
    ]
    assert refused == [
        ("request.refused", "unauthorized", "anonymous", whoami),
        ("auth.refused", "unauthorized", "anonymous", "/api/v1/orders"),
        ("auth.refused", "unauthorized", "anonymous", "/api/v1/orders"),
        ("auth.refused", "unauthorized", "anonymous", "/api/v1/orders"),
        ("auth.refused", "unauthorized", f"token:{gone.id} (revoked)", "/api/v1/orders"),
        ("auth.refused", "unauthorized", f"token:{lapsed.id} (expired)", "/api/v1/orders"),
        ("auth.refused", "unauthorized", f"token:{gone.id} (revoked)", "/api/v1/stream"),
        ("request.refused", "unknown_fixture", f"cert:{ghost_fp[:16]}", whoami),
        ("request.refused", "fixture_revoked", "fixture:fx-r", whoami),
        ("unit.refused", "wrong_site", "fixture:fx-b", None),
    ]
    unknown = [e for e in events.list_events(inst, after=start, limit=1_000) if e["code"] == "unknown_fixture"]
    assert unknown[0]["detail"]["cert_sha256"] == ghost_fp and "fx-r" in unknown[0]["detail"]["subject"]
    recorded = repr(events.list_events(inst, after=start, limit=1_000))
    assert gone_secret not in recorded and lapsed_secret not in recorded and "fgt_x" not in recorded


def test_a_token_refused_for_its_role_is_an_event_naming_it_and_its_role(any_world: World) -> None:
    world, inst = any_world, any_world.inst
    auditor, auditor_secret = tokens.create_token(inst, name="audrey", role="auditor", actor="test")
    # A metrics token reads /metrics alone: the dashboard's stream refuses it (an operator may follow
    # its own site's stream).
    scraper, scraper_secret = tokens.create_token(inst, name="prometheus", role="metrics", actor="test")
    start = events.list_events(inst, limit=1_000_000)[-1]["seq"]

    with _http(world) as http:
        as_auditor = {"Authorization": f"Bearer {auditor_secret}"}
        made = http.post("/api/v1/products", json={"id": "x", "name": "X"}, headers=as_auditor)
        acked = http.post("/api/v1/alerts/quota_overrun.0000000000000000/ack", json={}, headers=as_auditor)
        streamed = http.get("/api/v1/stream", params={"token": scraper_secret})
    assert [r.status_code for r in (made, acked, streamed)] == [403, 403, 403]
    assert made.json()["error"]["code"] == "forbidden"

    refused = [
        (e["kind"], e["code"], e["actor"], e["detail"]["route"], e["detail"]["role"])
        for e in events.list_events(inst, after=start, limit=1_000)
    ]
    assert refused == [
        ("auth.refused", "forbidden", auditor.actor, "/api/v1/products", "auditor"),
        ("auth.refused", "forbidden", auditor.actor, "/api/v1/alerts/quota_overrun.0000000000000000/ack", "auditor"),
        ("auth.refused", "forbidden", scraper.actor, "/api/v1/stream", "metrics"),
    ]
    assert "fgt_" not in repr(events.list_events(inst, after=start, limit=1_000))


def test_an_anonymous_flood_writes_a_bounded_number_of_events(world: World) -> None:
    inst = world.inst
    start = events.list_events(inst, limit=1_000_000)[-1]["seq"]
    began = time.monotonic()
    with _http(world) as anonymous:
        answers = [anonymous.get("/api/v1/orders").status_code for _ in range(30)]
        answers += [anonymous.get("/api/v1/fixture/whoami").status_code for _ in range(10)]
    elapsed = time.monotonic() - began

    assert answers == [401] * 40
    recorded = events.list_events(inst, after=start, limit=1_000)
    # The burst of 10, then one a second at most; each later one counts those left out before it.
    assert 10 <= len(recorded) <= 10 + math.ceil(elapsed) + 1
    assert len(recorded) + sum(int(e["detail"].get("unrecorded_before", 0)) for e in recorded) <= 40
    assert {e["actor"] for e in recorded} == {"anonymous"}
