"""The fabguard command in a script: tables never cut a value when stdout is a pipe, ``--json`` on list commands."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.table import Table
from typer.testing import CliRunner

from fabguard.cli.common import ScriptableConsole
from fabguard.cli.main import app

runner = CliRunner()
FABGUARD = (sys.executable, "-m", "fabguard.cli.main")
LONG_ORDER = "po-1042-contract-manufacturer-acme-shenzhen-batch-2027-q1-rev-b"
LONG_PRODUCT = "sensor-industrial-gateway-model-x"
LONG_SITE = "cm-acme-shenzhen-factory-line-7"


def fg(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, ["--home", str(home), *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    fg(home, "init", "--org", "Acme Devices")
    fg(home, "product", "add", LONG_PRODUCT, "--name", "Industrial gateway model X")
    fg(home, "site", "add", LONG_SITE, "--name", "Acme Shenzhen line 7")
    fg(home, "order", "create", "--id", LONG_ORDER, "--product", LONG_PRODUCT, "--site", LONG_SITE, "--quota", "500")
    return home


def _piped(home: Path, *args: str) -> str:
    """What ``fabguard ... | cat`` sees: stdout a pipe, no COLUMNS, the default 80-column guess."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run([*FABGUARD, "--home", str(home), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_list_in_a_pipe_shows_every_id_whole_on_one_line(home: Path) -> None:
    out = _piped(home, "order", "list")
    lines = [line for line in out.splitlines() if LONG_ORDER in line]  # what `| grep -c` counts
    assert len(lines) == 1, out
    assert LONG_PRODUCT in lines[0] and LONG_SITE in lines[0] and "…" not in out
    assert any(LONG_PRODUCT in line for line in _piped(home, "product", "list").splitlines())


def test_a_table_too_wide_for_a_terminal_folds_an_id_and_never_cuts_it() -> None:
    screen = io.StringIO()
    terminal = ScriptableConsole(file=screen, force_terminal=True, width=60, color_system=None)
    table = Table("order", "product", "site", "state", "quota")
    table.add_row(LONG_ORDER, LONG_PRODUCT, LONG_SITE, "active", "500")
    terminal.print(table)
    out = screen.getvalue()
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 60
    first_cells = "".join(line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│"))
    assert LONG_ORDER in first_cells


def _json(home: Path, *args: str) -> Any:
    return json.loads(fg(home, *args, "--json"))


def test_every_list_and_show_prints_json_with_the_ids(home: Path) -> None:
    fg(home, "fixture", "add", "fx-line-7-station-1", "--site", LONG_SITE)
    fg(home, "royalty", "rate", "set", "--amount", "0.42", "--currency", "EUR", "--product", LONG_PRODUCT)
    assert [o["id"] for o in _json(home, "order", "list")] == [LONG_ORDER]
    assert _json(home, "order", "show", LONG_ORDER)["quota"] == 500
    assert [p["id"] for p in _json(home, "product", "list")] == [LONG_PRODUCT]
    assert [s["id"] for s in _json(home, "site", "list")] == [LONG_SITE]
    assert [f["id"] for f in _json(home, "fixture", "list")] == ["fx-line-7-station-1"]
    assert _json(home, "unit", "list") == []  # none provisioned yet; a real unit is in tests/cli/test_units_cli.py
    cas = _json(home, "ca", "list")
    assert {"root", "issuing"} <= {c["role"] for c in cas} and all(c["name"] for c in cas)
    tokens = _json(home, "token", "list")
    assert [t["role"] for t in tokens] == ["admin"] and tokens[0]["id"] and "token" not in tokens[0]
    people = _json(home, "person", "list")
    assert _json(home, "person", "show", people[0]["id"])["tokens"][0]["id"] == tokens[0]["id"]
    assert [(r["product_id"], r["amount"]) for r in _json(home, "royalty", "rate", "list")] == [(LONG_PRODUCT, "0.42")]
    assert _json(home, "approval", "list") == [] and _json(home, "lease", "list") == []
    assert _json(home, "firmware", "list") == []


def test_a_database_that_does_not_answer_exits_4_with_one_line(home: Path) -> None:
    env = {"FABGUARD_DATABASE_URL": "postgresql+psycopg://fabguard@127.0.0.1:1/nowhere?connect_timeout=2"}
    result = runner.invoke(app, ["--home", str(home), "order", "list"], env=env)
    assert result.exit_code == 4, result.output
    assert "database" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_exit_codes_are_usage_2_refused_3_with_its_code(home: Path) -> None:
    assert runner.invoke(app, ["--home", str(home), "order", "list", "--no-such-option"]).exit_code == 2
    refused = runner.invoke(app, ["--home", str(home), "order", "show", "po-missing"])
    assert refused.exit_code == 3 and "[order_not_found]" in " ".join(refused.output.split())
    as_json = runner.invoke(app, ["--home", str(home), "order", "show", "po-missing", "--json"])
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)["error"]["code"] == "order_not_found"


def test_a_date_alone_for_valid_until_means_midnight_utc(home: Path) -> None:
    fg(
        home,
        "order",
        "create",
        "--id",
        "po-dated",
        "--product",
        LONG_PRODUCT,
        "--site",
        LONG_SITE,
        "--quota",
        "5",
        "--valid-until",
        "2027-03-31",
    )
    assert _json(home, "order", "show", "po-dated")["valid_until"] == "2027-03-31T00:00:00+00:00"
