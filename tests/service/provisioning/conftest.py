"""What the provisioning tests that run real ``fabguard serve`` processes share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.service.provisioning.test_quota_concurrency import ServerProcess, free_port


@pytest.fixture
def server_processes(tmp_path: Path) -> Iterator[Callable[[Path], ServerProcess]]:
    """A factory of started server processes; every one is stopped at teardown, pass or fail."""
    started: list[ServerProcess] = []

    def start(home: Path, workers: int = 1) -> ServerProcess:
        server = ServerProcess(home, free_port(), tmp_path / f"server-{len(started)}.log", workers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
