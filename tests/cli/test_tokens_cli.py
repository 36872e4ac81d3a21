"""``fabguard token create``: role, site and expiry on the command line, refusals as one-liners."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from fabguard.service.access import tokens
from fabguard.service.core.instance import Instance
from tests.cli.test_cli import fg


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert fg(home, "init", "--org", "Acme Devices")[0] == 0
    assert fg(home, "site", "add", "cm-a", "--name", "CM A")[0] == 0
    return home


def test_token_create_help_names_site_and_expiry(home: Path) -> None:
    code, out = fg(home, "token", "create", "--help")
    assert code == 0 and "--site" in out and "--expires-in" in out and "operator" in out and "365d" in out


def test_an_operator_token_for_a_site_with_a_lifetime(home: Path) -> None:
    code, out = fg(
        home, "token", "create", "--name", "line-a", "--role", "operator", "--site", "cm-a", "--expires-in", "12h"
    )
    assert code == 0 and "at site cm-a" in out, out
    secret = re.search(r"fgt_[\w-]+", out).group(0)  # type: ignore[union-attr]
    inst = Instance.open(home)
    try:
        p = tokens.authenticate_token(inst, secret)
        assert p.site_id == "cm-a" and p.expires_at is not None
        assert timedelta(hours=11) < p.expires_at - inst.clock() <= timedelta(hours=12)
    finally:
        inst.close()
    code, out = fg(home, "token", "list")
    assert "line-a" in out and "cm-a" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--role", "operator"), "token_site_invalid"),
        (("--role", "auditor", "--site", "cm-a"), "token_site_invalid"),
        (("--role", "auditor", "--expires-in", "400d"), "token_expiry_invalid"),
        (("--role", "auditor", "--expires-in", "soon"), "token_expiry_invalid"),
        (("--role", "operator", "--site", "cm-zz"), "site_not_found"),
    ],
)
def test_bad_scope_or_lifetime_is_a_one_line_refusal(home: Path, args: tuple[str, ...], expected: str) -> None:
    code, out = fg(home, "token", "create", "--name", "x", *args)
    assert code == 3 and expected in out and "Traceback" not in out, out
