"""The dashboard's browser session over the real HTTPS server: a token posted once becomes an HttpOnly,
Secure, SameSite=Strict cookie; changes through it need the page's own Origin; signing out and revoking
the token end it."""

from __future__ import annotations

import ssl

import httpx

from fabguard.domain.values import Role, SiteId
from fabguard.service.access import tokens
from tests.support import World


def _client(world: World) -> httpx.Client:
    return httpx.Client(base_url=world.url, verify=ssl.create_default_context(cafile=str(world.root_ca)), timeout=30)


def _sign_in(world: World, token: str) -> tuple[httpx.Response, str]:
    with _client(world) as c:
        answer = c.post("/api/v1/session", json={"token": token}, headers={"Origin": world.url})
    return answer, answer.cookies.get("fabguard_session", "")


def test_a_session_cookie_stands_for_its_token_until_sign_out(any_world: World) -> None:
    token_row, token = tokens.create_token(any_world.inst, name="eng", role=Role.ENGINEER, actor="t")
    answer, secret = _sign_in(any_world, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["role"] == "engineer" and answer.json()["token_id"] == token_row.id
    cookie = answer.headers["set-cookie"]
    assert secret.startswith("fgs_") and token not in cookie
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower(), cookie
    jar = {"Cookie": f"fabguard_session={secret}"}
    with _client(any_world) as c:
        assert c.get("/api/v1/session", headers=jar).json()["role"] == "engineer"
        assert c.get("/api/v1/stats/overview", headers=jar).status_code == 200
        # A change through the session: refused without the page's Origin or from another one.
        for headers in ({}, {"Origin": "https://evil.example"}):
            refused = c.post("/api/v1/alerts/x_y.0000000000000000/ack", json={}, headers={**jar, **headers})
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "cross_origin_refused")
        passed = c.post("/api/v1/alerts/x_y.0000000000000000/ack", json={}, headers={**jar, "Origin": any_world.url})
        assert (passed.status_code, passed.json()["error"]["code"]) == (404, "alert_not_found")
        # The stream follows the session too (EventSource sends the cookie, no token).
        with c.stream("GET", "/api/v1/stream", headers=jar) as stream:
            assert stream.status_code == 200
        ended = c.delete("/api/v1/session", headers={**jar, "Origin": any_world.url})
        assert ended.json() == {"ended": True} and "max-age=0" in ended.headers["set-cookie"].lower()
        gone = c.get("/api/v1/stats/overview", headers=jar)
        assert (gone.status_code, gone.json()["error"]["code"]) == (401, "unauthorized")
        assert c.get("/api/v1/stream", headers=jar).status_code == 401


def test_revoking_the_token_ends_its_sessions_and_sign_in_is_checked(any_world: World) -> None:
    row, token = tokens.create_token(any_world.inst, name="op", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="t")
    _, secret = _sign_in(any_world, token)
    jar = {"Cookie": f"fabguard_session={secret}"}
    with _client(any_world) as c:
        me = c.get("/api/v1/session", headers=jar).json()
        assert (me["role"], me["site_id"]) == ("operator", "cm-a")
        tokens.revoke_token(any_world.inst, row.id, actor="t")
        after = c.get("/api/v1/stats/overview", headers=jar)
        assert (after.status_code, after.json()["error"]["code"]) == (401, "unauthorized")
        assert "revoked" in after.json()["error"]["message"]
        bad = c.post("/api/v1/session", json={"token": "fgt_nope"}, headers={"Origin": any_world.url})
        assert (bad.status_code, bad.json()["error"]["code"]) == (
            401,
            "unauthorized",
        ) and "set-cookie" not in bad.headers
        _, fresh = tokens.create_token(any_world.inst, name="eng", role=Role.ENGINEER, actor="t")
        elsewhere = c.post("/api/v1/session", json={"token": fresh}, headers={"Origin": "https://evil.example"})
        assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (403, "cross_origin_refused")
        forged = c.get("/api/v1/stats/overview", headers={"Cookie": "fabguard_session=fgs_forged"})
        assert forged.status_code == 401
