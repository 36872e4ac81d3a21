"""``fabguard approval list/approve/reject`` end to end: CA changes asked for on the command line wait
for a second person's token; refusals are one-liners."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.test_cli import fg


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert fg(home, "init", "--org", "Acme Devices")[0] == 0
    assert fg(home, "site", "add", "cm-a", "--name", "CM A")[0] == 0
    return home


def _token(home: Path, name: str, role: str) -> dict[str, str]:
    code, out = fg(home, "token", "create", "--name", name, "--role", role)
    assert code == 0, out
    return {"FABGUARD_TOKEN": re.search(r"fgt_[\w-]+", out).group(0)}  # type: ignore[union-attr]


def _states(home: Path) -> dict[str, str]:
    code, out = fg(home, "approval", "list", "--state", "pending", "--json")
    assert code == 0, out
    return {str(a["id"]): a["state"] for a in json.loads(out)}


def test_ca_changes_wait_in_the_approval_list_for_a_second_persons_token(home: Path) -> None:
    alex, erin = _token(home, "alex", "approver"), _token(home, "erin", "engineer")

    code, out = fg(home, "ca", "create-issuing", "issuing-cm-a", "--site", "cm-a")
    assert code == 0 and "Request 1 to create an issuing CA (issuing-cm-a) waits for a second person" in out, out
    assert "issuing-cm-a" not in fg(home, "ca", "list")[1]
    code, out = fg(home, "approval", "list")
    assert code == 0 and "create an issuing CA" in out and "issuing-cm-a" in out and "local:" in out, out

    code, out = fg(home, "approval", "approve", "1")
    assert code == 3 and "token_required" in out and "Traceback" not in out, out
    code, out = fg(home, "approval", "approve", "1", env=erin)
    assert code == 3 and "forbidden" in out, out
    code, out = fg(home, "approval", "approve", "1", env=alex)
    assert code == 0 and "Request 1 approved: create an issuing CA (issuing-cm-a) done" in out, out
    assert re.search(r"issuing-cm-a\W+issuing\W+active\W+cm-a", fg(home, "ca", "list")[1])

    code, out = fg(home, "ca", "revoke", "issuing-cm-a", "--note", "not a breach after all")
    assert code == 0 and "Request 2 to revoke a CA" in out, out
    assert _states(home) == {"2": "pending"}
    code, out = fg(home, "approval", "reject", "2", env=alex)
    assert code == 0 and "Request 2 rejected" in out and "not done" in out, out
    assert _states(home) == {}
    code, out = fg(home, "approval", "list", "--state", "rejected", "--json")
    assert [(a["id"], a["kind"], a["decided_by"].startswith("alex (")) for a in json.loads(out)] == [
        (2, "ca.revoke", True)
    ]
    code, out = fg(home, "approval", "approve", "2", env=alex)
    assert code == 3 and "approval_decided" in out, out
    assert re.search(r"issuing-cm-a\W+issuing\W+active", fg(home, "ca", "list")[1])


def test_the_requester_cannot_approve_their_own_request_and_a_bad_one_is_refused_at_once(home: Path) -> None:
    alex = _token(home, "alex", "approver")
    code, out = fg(home, "ca", "rotate", "issuing", "--new-name", "issuing-2", env=alex)
    assert code == 0 and "Request 1 to rotate an issuing CA (issuing)" in out, out
    code, out = fg(home, "approval", "approve", "1", env=alex)
    assert code == 3 and "same_approver" in out and "Traceback" not in out, out
    code, out = fg(home, "ca", "revoke", "root", "--note", "x")
    assert code == 3 and "ca_is_root" in out, out
    code, out = fg(home, "ca", "create-issuing", "issuing-x", "--site", "cm-zz")
    assert code == 3 and "site_not_found" in out, out
    code, out = fg(home, "approval", "list", "--state", "sometime")
    assert code == 3 and "invalid_state" in out, out
    assert _states(home) == {"1": "pending"}
