"""Licences over real HTTPS and the CLI: an engineer issues one, an auditor cannot, the CLI verifies it as the
device would (and refuses it for another device), bad requests get their codes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.service.access import tokens
from fabguard.service.authority import revocation
from tests.support import World, tested_device


def _client(world: World, role: str) -> httpx.Client:
    _, secret = tokens.create_token(world.inst, name=role, role=role, actor="test")
    http = world.admin()
    http.headers["Authorization"] = f"Bearer {secret}"
    return http


def test_issue_over_the_api_and_verify_with_the_cli_as_the_device(world: World, tmp_path: Path) -> None:
    order = world.order(quota=2)
    fx = world.fixture("fx-1")
    certs = {}
    for serial in ("SN-A", "SN-B"):
        certs[serial] = tmp_path / f"{serial}.pem"
        certs[serial].write_text(fx.provision(order, serial, tested_device(fx, serial).csr_pem()).certificate_pem)
    with _client(world, "engineer") as eng:
        r = eng.post(
            "/api/v1/units/SN-A/licences", json={"features": ["radio.lte"], "not_after": "2099-01-01T00:00:00Z"}
        )
        assert r.status_code == 201, r.text
        doc = r.json()
        for body, status, code in (
            ({"features": ["BAD FEATURE"]}, 422, "invalid_feature"),
            ({"features": ["a"], "not_after": "2000-01-01T00:00:00Z"}, 422, "licence_expiry_invalid"),
            ({"features": "radio"}, 422, "invalid_request"),
        ):
            r = eng.post("/api/v1/units/SN-A/licences", json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        r = eng.post("/api/v1/units/SN-NONE/licences", json={"features": ["a"]})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unit_not_found")
    with _client(world, "auditor") as aud:
        assert aud.post("/api/v1/units/SN-A/licences", json={"features": ["a"]}).status_code == 403
        listed = aud.get("/api/v1/units/SN-A/licences").json()
        assert [d["id"] for d in listed] == [doc["id"]] and listed[0]["signature"] == doc["signature"]

    lic = tmp_path / "lic.json"
    lic.write_text(json.dumps({k: doc[k] for k in ("licence", "signature", "chain")}))
    runner = CliRunner()
    base = ["licence", "verify", str(lic), "--root", str(world.root_ca), "--device-cert"]
    good = runner.invoke(app, [*base, str(certs["SN-A"])], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert good.exit_code == 0 and "valid" in good.output and "radio.lte" in good.output, good.output
    bad = runner.invoke(app, [*base, str(certs["SN-B"])], env={"COLUMNS": "200"}, catch_exceptions=False)
    lines = [ln for ln in bad.output.splitlines() if ln.strip()]
    assert bad.exit_code == 1 and len(lines) == 1 and "licence_wrong_device" in lines[0], bad.output


def test_cli_issues_a_licence_and_refuses_a_revoked_unit_in_one_line(world: World, tmp_path: Path) -> None:
    order = world.order(quota=2)
    fx = world.fixture("fx-1")
    for serial in ("SN-A", "SN-B"):
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())
    revocation.revoke_unit(world.inst, "SN-B", reason_code="key_compromise", note="cloned", actor="admin")
    runner = CliRunner()
    home = [
        "--home",
        str(world.inst.home),
        "licence",
        "issue",
        "--feature",
        "analytics",
        "--out",
        str(tmp_path / "l.json"),
    ]
    ok = runner.invoke(app, [*home, "--serial", "SN-A"], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert ok.exit_code == 0 and "analytics" in ok.output, ok.output
    assert json.loads((tmp_path / "l.json").read_text())["licence"]["device"]["serial"] == "SN-A"
    refused = runner.invoke(app, [*home, "--serial", "SN-B"], env={"COLUMNS": "200"}, catch_exceptions=False)
    lines = [ln for ln in refused.output.splitlines() if ln.strip()]
    assert refused.exit_code == 3 and len(lines) == 1 and "revoked" in lines[0], refused.output
