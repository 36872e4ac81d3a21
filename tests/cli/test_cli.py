"""The fabguard command on a real instance directory: tables on success, one-line errors on failure."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.service.catalog import orders
from fabguard.service.core.instance import Instance

runner = CliRunner()


def fg(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(
        app, ["--home", str(home), *args], env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False
    )
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    code, out = fg(home, "init", "--org", "Acme Devices")
    assert code == 0, out
    return home


def test_init_prints_an_admin_token_once_and_stores_only_its_hash(home: Path) -> None:
    db = (home / "fabguard.db").read_bytes()
    keys = [p.read_text() for p in (home / "keys").iterdir()]
    assert all("ENCRYPTED PRIVATE KEY" in k for k in keys) and len(keys) == 6
    assert (home / "keys" / "firmware.key.pem").exists()  # made here, never by a read (issue 23)
    assert b"fgt_" not in db


def test_init_refuses_an_existing_instance_with_a_message(home: Path) -> None:
    code, out = fg(home, "init", "--org", "Again")
    assert code == 3
    assert "already holds a FabGuard instance" in out and "Traceback" not in out


def test_init_without_a_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    env = {"FABGUARD_KEY_PASSPHRASE": ""}
    code, out = fg(tmp_path / "h", "init", "--org", "Acme", env=env)
    assert code == 3 and "no key passphrase" in out
    assert not (tmp_path / "h" / "keys").exists()


def test_commands_without_an_instance_say_how_to_make_one(tmp_path: Path) -> None:
    code, out = fg(tmp_path / "nowhere", "order", "list")
    assert code == 3 and "fabguard init" in out


def test_catalogue_and_orders_round_trip_with_tables(home: Path) -> None:
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    assert fg(home, "site", "add", "cm-a", "--name", "CM A")[0] == 0
    code, out = fg(home, "order", "create", "--id", "po-1", "--product", "sensor", "--site", "cm-a", "--quota", "500")
    assert code == 0 and "po-1" in out and "500" in out
    code, out = fg(home, "order", "list")
    assert "po-1" in out and "remaining" in out
    code, out = fg(home, "fixture", "add", "fx-1", "--site", "cm-a")
    assert code == 0 and re.search(r"fge_[\w-]+", out)
    code, out = fg(home, "fixture", "list")
    assert "awaiting_enrollment" in out


def test_bad_input_gets_a_message_not_a_traceback(home: Path) -> None:
    fg(home, "product", "add", "sensor", "--name", "Sensor")
    fg(home, "site", "add", "cm-a", "--name", "CM A")
    for args, expected in [
        (("product", "add", "Bad Id!", "--name", "x"), "product id"),
        (("product", "add", "sensor", "--name", "dup"), "already exists"),
        (("order", "create", "--product", "nope", "--site", "cm-a", "--quota", "5"), "no product"),
        (("order", "create", "--product", "sensor", "--site", "cm-a", "--quota", "-1"), "quota"),
        (
            ("order", "create", "--product", "sensor", "--site", "cm-a", "--quota", "5", "--valid-until", "tomorrow"),
            "ISO 8601",
        ),
        (("order", "show", "po-missing"), "no order"),
        (("fixture", "revoke", "fx-missing", "--reason", "lost"), "no fixture"),
    ]:
        code, out = fg(home, *args)
        assert code == 3, (args, out)
        assert expected in out and "Traceback" not in out, (args, out)


def test_quota_raise_waits_for_a_second_person(home: Path) -> None:
    fg(home, "product", "add", "sensor", "--name", "Sensor")
    fg(home, "site", "add", "cm-a", "--name", "CM A")
    fg(home, "order", "create", "--id", "po-1", "--product", "sensor", "--site", "cm-a", "--quota", "500")
    _, out = fg(home, "token", "create", "--name", "alice", "--role", "approver")
    alice = re.search(r"fgt_[\w-]+", out).group(0)  # type: ignore[union-attr]
    _, out = fg(home, "token", "create", "--name", "bob", "--role", "approver")
    bob = re.search(r"fgt_[\w-]+", out).group(0)  # type: ignore[union-attr]

    code, out = fg(home, "order", "quota", "po-1", "600", "--reason", "extra batch", env={"FABGUARD_TOKEN": alice})
    assert code == 0 and "pending" in out
    change = re.search(r"approve (\d+)", out).group(1)  # type: ignore[union-attr]
    inst = Instance.open(home)
    try:
        assert orders.get_order(inst, "po-1").quota == 500

        code, out = fg(home, "order", "approve", change, env={"FABGUARD_TOKEN": alice})
        assert code == 3 and "second person" in out and "same_approver" in out
        code, out = fg(home, "order", "approve", change)
        assert code == 3 and "FABGUARD_TOKEN" in out
        assert orders.get_order(inst, "po-1").quota == 500

        code, out = fg(home, "order", "approve", change, env={"FABGUARD_TOKEN": bob})
        assert code == 0, out
        assert orders.get_order(inst, "po-1").quota == 600
    finally:
        inst.close()


def test_lowering_a_quota_applies_at_once(home: Path) -> None:
    fg(home, "product", "add", "sensor", "--name", "Sensor")
    fg(home, "site", "add", "cm-a", "--name", "CM A")
    fg(home, "order", "create", "--id", "po-1", "--product", "sensor", "--site", "cm-a", "--quota", "500")
    code, out = fg(home, "order", "quota", "po-1", "400", "--reason", "smaller run")
    assert code == 0 and "now 400" in out


def test_help_texts_name_every_command(home: Path) -> None:
    code, out = fg(home, "--help")
    assert code == 0
    for command in ("init", "serve", "demo", "order", "fixture", "product", "site", "token", "events"):
        assert command in out
    assert os.environ.get("FABGUARD_KEY_PASSPHRASE")


def test_init_with_an_hsm_keeps_ca_keys_out_of_the_instance(tmp_path: Path, softhsm: object) -> None:
    from tests.support import TOKEN, USER_PIN

    home = tmp_path / "hsm-home"
    code, out = fg(
        home,
        "init",
        "--org",
        "Acme",
        "--key-backend",
        "pkcs11",
        "--pkcs11-module",
        "/usr/lib/softhsm/libsofthsm2.so",
        "--pkcs11-token",
        TOKEN,
        env={"FABGUARD_PKCS11_PIN": USER_PIN},
    )
    assert code == 0, out
    assert sorted(p.name for p in (home / "keys").iterdir()) == ["ledger.key.pem", "server.key.pem"]
    code, out = fg(home, "ca", "list", env={"FABGUARD_PKCS11_PIN": USER_PIN})
    assert code == 0 and out.count("pkcs11") == 3
    code, out = fg(tmp_path / "bad", "init", "--org", "Acme", "--key-backend", "pkcs11")
    assert code == 3 and "--pkcs11-module" in out
