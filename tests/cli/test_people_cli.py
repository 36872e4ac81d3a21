"""``fabguard person ...`` and ``fabguard token create --person``: the local operator's acts at once, an
admin's token under dual control; refusals as one-liners."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.test_cli import fg


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    code, out = fg(home, "init", "--org", "Acme Devices")
    assert code == 0, out
    return home


def _secret(out: str) -> dict[str, str]:
    return {"FABGUARD_TOKEN": re.search(r"fgt_[\w-]+", out).group(0)}  # type: ignore[union-attr]


def test_init_makes_the_first_admin_person_and_people_are_managed_on_the_command_line(home: Path) -> None:
    code, out = fg(home, "person", "list", "--json")
    assert code == 0 and [(p["name"], p["roles"]) for p in json.loads(out)] == [("admin", ["admin"])], out
    code, out = fg(home, "person", "add", "alex", "--role", "approver", "--contact", "alex@acme.test")
    assert code == 0 and "alex" in out and "approver" in out and "waits" not in out, out
    code, out = fg(home, "token", "create", "--person", "alex", "--role", "approver", "--name", "alex-laptop")
    assert code == 0 and "(alex-laptop) of alex" in out, out
    code, out = fg(home, "person", "show", "alex")
    assert code == 0 and '"alex-laptop"' in out and "fgt_" not in out, out

    code, out = fg(home, "token", "create", "--person", "alex", "--role", "engineer")
    assert code == 3 and "person_lacks_role" in out and "Traceback" not in out, out
    code, out = fg(home, "token", "create", "--role", "auditor")
    assert code == 3 and "person_invalid" in out, out
    code, out = fg(home, "person", "grant", "nobody", "engineer")
    assert code == 3 and "person_not_found" in out, out


def test_with_an_admins_token_granting_approver_waits_for_a_second_person(home: Path) -> None:
    code, out = fg(home, "token", "create", "--person", "admin", "--role", "admin", "--name", "admin-cli")
    as_admin = _secret(out)
    # The bootstrap: alex comes in by the first admin's act alone (two approving tokens then exist).
    assert fg(home, "person", "add", "alex", "--role", "approver", env=as_admin)[0] == 0
    code, out = fg(home, "token", "create", "--person", "alex", "--role", "approver")
    as_alex = _secret(out)
    assert fg(home, "person", "add", "mallory", "--role", "engineer", env=as_admin)[0] == 0
    code, out = fg(home, "person", "grant", "mallory", "approver", env=as_admin)
    assert code == 0 and "waits for a second person" in out, out
    request = re.search(r"Request (\d+)", out).group(1)  # type: ignore[union-attr]
    code, out = fg(home, "approval", "approve", request, env=as_admin)
    assert code == 3 and "same_approver" in out, out
    code, out = fg(home, "approval", "approve", request, env=as_alex)
    assert code == 0, out
    code, out = fg(home, "person", "show", "mallory")
    assert '"approver"' in out, out

    code, out = fg(home, "person", "suspend", "mallory", "--reason", "left")
    assert code == 0 and "suspended" in out, out
    code, out = fg(home, "token", "create", "--person", "mallory", "--role", "engineer")
    assert code == 3 and "person_suspended" in out, out
