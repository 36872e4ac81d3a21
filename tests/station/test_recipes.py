"""The recipes of docs/station.md, run as a line PC would: the shell step and the pytest plugin, against a
running server, with ``fabguard-station`` on the PATH. The docs show these very files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from fabguard.fixture.device import SimulatedDevice
from fabguard.service.provisioning import testrecords
from tests.station.conftest import DATA, ROOT, Station
from tests.support import World

RECIPES = ROOT / "station" / "recipes"
DOC = ROOT / "docs" / "station.md"


def step(station: Station, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(RECIPES / "station-step.sh"), *(str(a) for a in args)],
        env=station.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_shell_step_provisions_a_passed_unit_and_stops_at_a_refusal(
    world: World, station: Station, tmp_path: Path
) -> None:
    order = world.order(quota=2)
    assert station.enroll(world, "fx-shell").code == 0
    device = SimulatedDevice("SN-CSV-0001")
    csr = tmp_path / "unit.csr"
    csr.write_text(device.csr_pem())

    ok = step(station, device.serial, DATA / "csv" / "station_run.csv", order, csr, tmp_path / "out")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PROVISIONED" in ok.stdout
    cert = x509.load_pem_x509_certificate((tmp_path / "out" / "SN-CSV-0001.pem").read_bytes())
    assert cert.public_key() == device.key.public_key()

    failed = DATA / "atml" / "teststand_atml601_failed.xml"  # a stored run that failed: the gate says no
    other = SimulatedDevice("SN-ATML-0002")
    csr.write_text(other.csr_pem())
    refused = step(station, other.serial, failed, order, csr, tmp_path / "out")
    assert refused.returncode == 3 and "test_failed" in refused.stdout and "REFUSED: unit" in refused.stdout


def test_the_pytest_recipe_uploads_the_suites_junit_xml(world: World, station: Station, tmp_path: Path) -> None:
    assert station.enroll(world, "fx-pytest").code == 0
    suite = tmp_path / "suite"
    shutil.copytree(RECIPES / "pytest", suite)
    env = {**station.env, "UNIT_SERIAL": "SN-PYTEST-0001"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "junit_family=xunit1",
            f"--junitxml={tmp_path / 'report.xml'}",
            str(suite),
        ],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stored" in run.stdout
    (record,) = testrecords.records_for_serial(world.inst, "SN-PYTEST-0001")
    assert (record["outcome"], record["measurements"], record["station_id"]) == ("PASS", 2, "fx-pytest")


def test_the_docs_show_the_recipes_as_they_are_tested() -> None:
    doc = DOC.read_text()
    for recipe in (RECIPES / "station-step.sh", RECIPES / "pytest" / "conftest.py"):
        assert recipe.read_text().strip() in doc, recipe
