"""SIGKILL the agent while it provisions offline, restart it: no unit lost or counted twice."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from fabguard.fixture.client import FabGuardClientError
from fabguard.service.agent import sync
from fabguard.service.agent.site_agent import sync_package
from fabguard.service.core.instance import Instance
from fabguard.store.models import Order, Unit
from tests.agent.conftest import Site, agent_fixture
from tests.served import ServerProcess, fabguard_command, free_port
from tests.support import tested_device


class AgentProcess(ServerProcess):
    """``fabguard --home H agent serve`` as a real child process."""

    def start(self, timeout: float = 30.0) -> AgentProcess:
        cmd = [*fabguard_command(), "--home", str(self.home), "agent", "serve", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.wait_healthy(timeout)
        return self


def test_the_agent_killed_mid_lease_restarts_with_its_books_exact(site: Site, tmp_path: Path) -> None:
    site.world.server.stop()  # offline throughout, until the sync
    agent = AgentProcess(site.home, free_port(), tmp_path / "agent.log")
    agent.start()
    try:
        with agent_fixture(site, agent) as client:  # type: ignore[arg-type]
            devices = [tested_device(client, f"SN-K{n}") for n in range(4)]
            for d in devices[:2]:
                client.provision(site.order_id, d.serial, d.csr_pem())
            in_flight = threading.Thread(
                target=lambda: _try(lambda: client.provision(site.order_id, devices[2].serial, devices[2].csr_pem()))
            )
            in_flight.start()
            time.sleep(0.05)
            agent.kill()
            in_flight.join(timeout=30)
        agent.start()
        with agent_fixture(site, agent) as client:  # type: ignore[arg-type]
            third = client.provision(site.order_id, devices[2].serial, devices[2].csr_pem())
            again = client.provision(site.order_id, devices[2].serial, devices[2].csr_pem())
            assert again.replayed and again.certificate_pem == third.certificate_pem
            with pytest.raises(FabGuardClientError) as exc:
                client.provision(site.order_id, devices[3].serial, devices[3].csr_pem())
            assert exc.value.code == "quota_exhausted"
    finally:
        agent.stop()
    inst = Instance.open(site.home)
    try:
        with inst.db.read() as s:
            order = s.get(Order, site.order_id)
            assert order is not None
            assert order.used == s.execute(select(func.count()).select_from(Unit)).scalar_one() == 3
        summary = sync.sync_lease(site.world.inst, sync_package(inst, site.home), actor="test")
    finally:
        inst.close()
    assert summary["units_synced"] == 3 and summary["clones"] == []


def _try(call: object) -> None:
    with contextlib.suppress(httpx.HTTPError, FabGuardClientError):  # the agent died under it: retried later
        call()  # type: ignore[operator]
