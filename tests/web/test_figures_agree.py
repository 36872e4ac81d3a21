"""One definition of every figure (docs/figures.md): the overview, the order page, the production
figures (API and CLI) report the same first-pass yield, final yield, retest rate and scrap for the
same units, scrapped boards included."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.fixture.openhtf_records import openhtf_record
from tests.support import World, tested_device

FIGURES = ("units_tested", "first_pass", "final_pass", "retested", "scrapped")
RATES = ("first_pass_yield", "final_yield", "retest_rate", "scrap_rate")


def _get(world: World, path: str, **params: str) -> dict[str, Any]:
    with world.admin() as admin:
        response = admin.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _cli(home: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["--home", str(home), "stats", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _line(world: World) -> str:
    """One order at one site: four units pass first time, one passes on retest, one is retested and
    scrapped (fails twice), one scrapped after a single failing test; the five good ones provisioned."""
    order = world.order(10, order_id="po-figures")
    client = world.fixture("f1")
    good = [tested_device(client, f"SN000000{i}", seed=i) for i in range(1, 5)]
    good.append(tested_device(client, "SN0000005", passed=False, seed=5))
    client.upload_test_record(openhtf_record("SN0000005", "f1", fail=False, rng=random.Random(50)))
    tested_device(client, "SN0000006", passed=False, seed=6)
    client.upload_test_record(openhtf_record("SN0000006", "f1", fail=True, rng=random.Random(60)))
    tested_device(client, "SN0000007", passed=False, seed=7)
    for d in good:
        client.provision(order, d.serial, d.csr_pem())
    return order


def test_every_surface_reports_the_same_figures_for_the_same_units(any_world: World) -> None:
    order = _line(any_world)
    want = {
        "units_tested": 7,
        "tests": 9,
        "first_pass": 4,
        "final_pass": 5,
        "retested": 2,
        "scrapped": 2,
        "first_pass_yield": 4 / 7,
        "final_yield": 5 / 7,
        "retest_rate": 2 / 7,
        "scrap_rate": 2 / 7,
    }
    home = any_world.inst.home
    surfaces = {
        "overview": _get(any_world, "/api/v1/stats/overview")["yield"],
        "order page": _get(any_world, f"/api/v1/stats/orders/{order}")["yield"],
        "production": _get(any_world, "/api/v1/stats/production")["yield"],
        "production of the order": _get(any_world, "/api/v1/stats/production", order=order)["yield"],
        "production at the site": _get(any_world, "/api/v1/stats/production", site="cm-a")["yield"],
        "cli production": _cli(home, "production")["yield"],
        "cli production of the order": _cli(home, "production", "--order", order)["yield"],
        "cli order": _cli(home, "order", order)["yield"],
    }
    for name, figures in surfaces.items():
        assert {k: figures.get(k) for k in want} == want, name
