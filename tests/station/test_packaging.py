"""fabguard-station installs on its own: both wheels build from this repository, the station's installs into a
fresh virtual environment from wheels alone, brings nothing of the server, and its command runs there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.station.conftest import ROOT

SERVER_ONLY = {"fabguard", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "typer", "rich"}
# What a line PC gets: the station, httpx and cryptography with their own dependencies.
EXPECTED = {"fabguard-station", "httpx", "httpcore", "h11", "anyio", "idna", "certifi", "sniffio", "cryptography"}
EXPECTED |= {"cffi", "pycparser", "typing-extensions", "typing_extensions"}
TOOLING = {"pip", "setuptools", "wheel"}


def sh(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH: the line PC's environment has only what was installed into it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_the_station_wheel_installs_alone_without_the_server(tmp_path: Path) -> None:
    tree = tmp_path / "repo"  # a copy, so the build leaves nothing in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".mypy_cache")
    for part in ("src", "station"):
        shutil.copytree(ROOT / part, tree / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    wheels, deps = tmp_path / "wheels", tmp_path / "deps"
    built = sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, tree / "station", tree)
    if built.returncode != 0 and "network" in built.stderr.lower():
        pytest.skip(f"the build backend cannot be fetched: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    station = next(wheels.glob("fabguard_station-*.whl"))
    server = next(wheels.glob("fabguard-*.whl"))
    assert sh(sys.executable, "-m", "zipfile", "-l", server).stdout.count("fabguard_station/") == 0
    fetched = sh(
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--only-binary=:all:",
        "-d",
        deps,
        "httpx>=0.27",
        "cryptography>=44",
    )
    if fetched.returncode != 0:
        pytest.skip(f"PyPI is out of reach for httpx and cryptography wheels: {fetched.stderr[-300:]}")

    venv = tmp_path / "line-pc"
    assert sh(sys.executable, "-m", "venv", venv).returncode == 0
    pip = venv / "bin" / "pip"
    installed = sh(pip, "install", "-q", "--no-index", "--find-links", deps, station)
    assert installed.returncode == 0, installed.stderr

    listed = {p["name"].lower() for p in json.loads(sh(pip, "list", "--format=json").stdout)}
    assert not listed & SERVER_ONLY, listed & SERVER_ONLY
    assert listed - TOOLING <= EXPECTED, listed - TOOLING - EXPECTED
    python = venv / "bin" / "python"
    imports = "import fabguard_station.cli, fabguard_station.simulator, fabguard_station.openhtf_upload, fabguard_station.token_keys"
    assert sh(python, "-c", imports).returncode == 0
    assert sh(python, "-c", "import fabguard").returncode != 0
    helped = sh(venv / "bin" / "fabguard-station", "--help")
    assert helped.returncode == 0 and "exit codes" in helped.stdout
    usage = sh(venv / "bin" / "fabguard-station", "--dir", tmp_path / "none", "whoami", "--json")
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"]["code"] == "usage"

    # The installed size the README states (the station and its dependencies, without pip itself).
    size = sh(
        python,
        "-c",
        "import importlib.metadata as m, os\n"
        f"skip = {sorted(TOOLING)!r}\n"
        "print(sum(os.path.getsize(f.locate()) for d in m.distributions() if d.metadata['Name'].lower() not in skip"
        " for f in d.files or () if os.path.isfile(f.locate())))",
    )
    megabytes = int(size.stdout) / 1e6
    print(f"fabguard-station installed: {len(listed - TOOLING)} packages, {megabytes:.1f} MB")
    assert megabytes < 30, megabytes
