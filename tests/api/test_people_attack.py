"""Dual control means two people, not two tokens: the attack of issue 23, through the HTTP API."""

from __future__ import annotations

from tests.support import World


def test_an_admin_cannot_approve_their_own_admin_token_with_an_approver_token_minted_for_themself(
    any_world: World,
) -> None:
    with any_world.admin() as admin:
        asked = admin.post("/api/v1/tokens", json={"person": "admin", "name": "root-2", "role": "admin"})
        assert asked.status_code == 202, asked.text
        minted = admin.post("/api/v1/tokens", json={"person": "admin", "name": "someone-else", "role": "approver"})
        assert minted.status_code == 201, minted.text
        admin.headers["Authorization"] = f"Bearer {minted.json()['token']}"
        decided = admin.post(f"/api/v1/approvals/{asked.json()['id']}/approve")
        assert decided.status_code == 403 and decided.json()["error"]["code"] == "same_person", decided.text
