"""A change of the published URLs or of the HTTPS listener's certificate is a ledger event (who, what from and to);
a refused change records nothing, an unchanged value records nothing, and a change whose event cannot be written
leaves instance.json as it was."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.service.core import config_changes
from fabguard.service.core.config import load_config, set_published_urls
from fabguard.service.core.instance import Instance
from fabguard.store.models import Event
from tests.operator_ca import OperatorCA

runner = CliRunner()


def _config_events(home: Path) -> list[Event]:
    inst = Instance.open(home)
    try:
        with inst.db.read() as s:
            return list(s.execute(select(Event).where(Event.kind.like("config.%")).order_by(Event.seq)).scalars())
    finally:
        inst.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    made = runner.invoke(
        app, ["--home", str(home), "init", "--org", "Acme", "--public-url", "https://fab.example:8443"]
    )
    assert made.exit_code == 0, made.output
    return home


def test_a_url_change_is_recorded_with_who_and_from_and_to(home: Path) -> None:
    done = runner.invoke(app, ["--home", str(home), "config", "set", "public-url", "https://fab2.example:8443"])
    assert done.exit_code == 0, done.output
    [event] = _config_events(home)
    assert event.kind == "config.urls_changed" and event.actor == f"local:{getpass.getuser()}"
    assert json.loads(event.detail) == {
        "changed": {"public_url": {"from": "https://fab.example:8443", "to": "https://fab2.example:8443"}}
    }
    # The same value again changes nothing and records nothing; a refused URL neither.
    again = runner.invoke(app, ["--home", str(home), "config", "set", "public-url", "https://fab2.example:8443"])
    refused = runner.invoke(app, ["--home", str(home), "config", "set", "pki-url", "ftp://fab.example"])
    assert again.exit_code == 0 and refused.exit_code == 3, refused.output
    assert len(_config_events(home)) == 1


def test_the_listener_certificate_change_is_recorded(home: Path, tmp_path: Path) -> None:
    operator = OperatorCA(tmp_path / "operator")
    cert, key, _ = operator.server_certificate("server", hosts=("127.0.0.1",), with_root=True)
    done = runner.invoke(app, ["--home", str(home), "config", "tls", "--cert", str(cert), "--key", str(key)])
    assert done.exit_code == 0, done.output
    back = runner.invoke(app, ["--home", str(home), "config", "tls", "--station"])
    assert back.exit_code == 0, back.output
    first, second = _config_events(home)
    assert first.kind == second.kind == "config.tls_changed"
    assert json.loads(first.detail)["changed"]["tls_cert"] == {"from": None, "to": str(cert)}
    assert json.loads(second.detail)["changed"]["tls_key"] == {"from": str(key), "to": None}


def test_a_change_the_ledger_cannot_record_is_undone(home: Path) -> None:
    inst = Instance.open(home)
    try:
        with inst.db.transaction() as s:  # a real failure of the database's write, whatever the engine does
            s.execute(text("CREATE TRIGGER no_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'down'); END"))
        before = load_config(home)
        with pytest.raises(Exception, match="down"):
            config_changes.change_config(
                inst, home, "config.urls_changed", config_changes.URL_FIELDS,
                lambda: set_published_urls(home, public_url="https://elsewhere.example:8443"), actor="local:test",
            )  # fmt: skip
        assert load_config(home) == before
    finally:
        inst.close()
