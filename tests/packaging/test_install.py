"""fabguard installs from its wheels outside the repository and runs its demo; the PostgreSQL driver is the
``postgres`` extra, not forced on SQLite users, and a PostgreSQL URL without it stops with a clear message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# psycopg hidden: `import psycopg` fails as it does where the extra is not installed.
WITHOUT_PSYCOPG = "import sys\nfor name in ('psycopg', 'psycopg_binary', 'psycopg_c'):\n    sys.modules[name] = None\n"


def run(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    # Without PYTHONPATH unless given: a clean install has only what was installed into it.
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_postgresql_driver_is_an_extra_that_dev_includes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.startswith("psycopg")]
    extras = project["optional-dependencies"]
    assert any(d.startswith("psycopg[binary]") for d in extras["postgres"])
    assert "fabguard[postgres]" in extras["dev"]


def test_the_sqlite_path_imports_no_psycopg(tmp_path: Path) -> None:
    code = (
        WITHOUT_PSYCOPG + "import fabguard.cli.main, fabguard.api.app, fabguard.store.backups\n"
        "from fabguard.store.db import Database, sqlite_url\n"
        "from sqlalchemy import text\n"
        f"db = Database(sqlite_url(__import__('pathlib').Path({str(tmp_path / 'x.db')!r})))\n"
        "with db.transaction() as s:\n    assert s.execute(text('select 1')).scalar() == 1\n"
        "assert not [m for m in sys.modules if m.startswith('psycopg') and sys.modules[m] is not None]\n"
    )
    done = run(sys.executable, "-c", code, env={"PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr


def test_a_postgresql_url_without_the_driver_names_the_extra_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = (
        WITHOUT_PSYCOPG + "sys.argv = ['fabguard', 'init', '--org', 'Acme', "
        "'--database-url', 'postgresql+psycopg://fabguard@127.0.0.1:1/none']\n"
        "from fabguard.cli.main import main\nmain()\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "FABGUARD_HOME": str(home), "FABGUARD_KEY_PASSPHRASE": "x" * 16}
    done = run(sys.executable, "-c", code, env=env)
    assert done.returncode == 3, (done.stdout, done.stderr)  # refused, with its code
    message = " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert "pip install 'fabguard[postgres]'" in message and "[configuration_error]" in message, message
    assert not home.exists() or not any(home.iterdir())  # refused before any key or file was written

    # An instance whose configuration names PostgreSQL (or FABGUARD_DATABASE_URL does): the same message.
    code = (
        WITHOUT_PSYCOPG + "from fabguard.store.db import Database\n"
        "from fabguard.domain.errors import ConfigurationError\n"
        "try:\n    Database('postgresql+psycopg://fabguard@127.0.0.1:1/none')\n"
        "except ConfigurationError as exc:\n    print(exc.message)\nelse:\n    raise SystemExit('no error')\n"
    )
    done = run(sys.executable, "-c", code, env={"PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    assert "pip install 'fabguard[postgres]'" in done.stdout


@pytest.mark.slow
def test_the_wheels_install_in_a_clean_venv_and_run_the_demo(tmp_path: Path) -> None:
    started = time.monotonic()
    tree = tmp_path / "repo"  # a copy, so the build leaves nothing in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".mypy_cache")
    for part in ("src", "station"):
        shutil.copytree(ROOT / part, tree / part, ignore=ignore, symlinks=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    wheels = tmp_path / "wheels"
    # With build isolation: setuptools >= 77 comes from the package index.
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, tree / "station", tree)
    if built.returncode != 0 and "network" in built.stderr.lower():
        pytest.skip(f"the build backend cannot be fetched: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    station = next(wheels.glob("fabguard_station-*.whl"))
    server = next(wheels.glob("fabguard-*.whl"))

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    pip = venv / "bin" / "pip"
    # Dependencies from the package index (pip's cache makes a second run quick); nothing from the repository.
    installed = run(pip, "install", "-q", "--disable-pip-version-check", station, server, timeout=600)
    if installed.returncode != 0 and "network" in installed.stderr.lower():
        pytest.skip(f"the package index is out of reach: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    listed = {p["name"].lower() for p in json.loads(run(pip, "list", "--format=json").stdout)}
    assert {"fabguard", "fabguard-station"} <= listed
    assert not [name for name in listed if name.startswith("psycopg")], listed

    elsewhere = tmp_path / "elsewhere"  # outside the repository: only the installed package can answer
    elsewhere.mkdir()
    env = {"FABGUARD_HOME": str(tmp_path / "home"), "FABGUARD_KEY_PASSPHRASE": "demo-passphrase-0123"}
    demo = run(venv / "bin" / "fabguard", "demo", "--units", 30, "--quota", 20, cwd=elsewhere, env=env)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "quota_exhausted" in demo.stdout, demo.stdout[-2000:]
    print(f"wheels built, installed and the demo run in {time.monotonic() - started:.0f} s")
