from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fabguard.service.core.instance import Instance
from tests import hypothesis_profiles, templates
from tests.served import ServerProcess, free_port
from tests.support import (
    PASSPHRASE,
    PIN_TOKEN,
    SO_PIN,
    SOFTHSM_MODULE,
    TOKEN,
    USER_PIN,
    SoftHsm,
    World,
    fresh_pg_database,
    new_hsm_instance,
    new_instance,
    softhsm_available,
)

os.environ["FABGUARD_KEY_PASSPHRASE"] = PASSPHRASE
os.environ.pop("FABGUARD_KEY_PASSPHRASE_FILE", None)
os.environ.pop("FABGUARD_DATABASE_URL", None)
# pytest-xdist's workers start with COLUMNS=80 and LINES=24 in their environment. The CLI's Rich console
# takes its width from COLUMNS once, when it is made (at import), and would then ignore the COLUMNS each CLI
# test gives its command: tests see the caller's terminal size nowhere.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
hypothesis_profiles.load()  # before any test module is imported: their settings read the profile


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    templates.discard()


# An honest ``slow`` marker: the summary names the tests that took longer than this without carrying it.
UNMARKED_SLOW_S = 15.0
_unmarked_slow: list[tuple[float, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.duration > UNMARKED_SLOW_S and "slow" not in report.keywords:
        _unmarked_slow.append((report.duration, report.nodeid))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _unmarked_slow:
        terminalreporter.section(f"slower than {UNMARKED_SLOW_S:.0f} s without the slow marker")
        for duration, nodeid in sorted(_unmarked_slow, reverse=True):
            terminalreporter.write_line(f"{duration:6.1f}s {nodeid}")


def _from_template(request: pytest.FixtureRequest) -> bool:
    """Whether the test's database starts as a copy of the session's migrated template (tests/templates.py);
    tests marked ``migrations`` build theirs by running every migration."""
    return request.node.get_closest_marker("migrations") is None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for the embedded SQLite default, or a fresh PostgreSQL database: a copy of the migrated
    template, or empty for a test marked ``migrations``."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_pg_database(migrated=_from_template(request)) as url:
        yield url


@pytest.fixture
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    """An embedded (SQLite) instance."""
    inst = new_instance(tmp_path / "home", from_template=_from_template(request))
    yield inst
    inst.close()


@pytest.fixture
def any_instance(request: pytest.FixtureRequest, tmp_path: Path, database_url: str | None) -> Iterator[Instance]:
    """An instance on each database engine in turn."""
    inst = new_instance(tmp_path / "home", database_url, from_template=_from_template(request))
    yield inst
    inst.close()


@pytest.fixture
def world(instance: Instance, tmp_path: Path) -> Iterator[World]:
    w = World.start(instance, tmp_path)
    yield w
    w.stop()


@pytest.fixture
def any_world(any_instance: Instance, tmp_path: Path) -> Iterator[World]:
    w = World.start(any_instance, tmp_path)
    yield w
    w.stop()


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A private SoftHSM2 store with two initialised tokens, shared by the whole test session.

    python-pkcs11 loads the module once per process and SoftHSM2 reads ``SOFTHSM2_CONF`` at
    C_Initialize, so the store is made (and the variable set) once, before anything loads the
    module; tests then use their own key labels (instances prefix theirs).
    """
    if not softhsm_available():
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    directory = tmp_path_factory.mktemp("softhsm")
    tokens = directory / "tokens"
    tokens.mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        for label in (TOKEN, PIN_TOKEN):
            subprocess.run(
                ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN],
                check=True,
                capture_output=True,
            )
        yield SoftHsm(SOFTHSM_MODULE, directory)


@pytest.fixture(params=["file", "pkcs11"])
def ca_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A world on each CA key backend: encrypted files, and SoftHSM2 through PKCS#11."""
    if request.param == "pkcs11":
        inst = new_hsm_instance(tmp_path / "home", request.getfixturevalue("softhsm"))
    else:
        inst = new_instance(tmp_path / "home")
    w = World.start(inst, tmp_path)
    yield w
    w.stop()
    inst.close()


@pytest.fixture
def server_processes(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """A factory of started ``fabguard serve`` processes (``start(home, workers=1)``), each logging to its own
    file under ``tmp_path``; every one is stopped at teardown, pass or fail."""
    started: list[ServerProcess] = []

    def start(home: Path, workers: int = 1) -> ServerProcess:
        server = ServerProcess(home, free_port(), tmp_path / f"server-{len(started)}.log", workers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
