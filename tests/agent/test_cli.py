"""The agent's round trip through the command line: prepare, lease issue (approved by a second person),
lease bundle, init, status, sync by file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

from fabguard.api.server import ServerThread
from fabguard.cli.main import app
from fabguard.service.approvals import requests
from fabguard.service.core.instance import Instance
from tests.agent.conftest import Site, agent_fixture
from tests.support import World, second_person_approves, tested_device

runner = CliRunner()


def fg(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(
        app, ["--home", str(home), *args], env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False
    )
    return result.exit_code, " ".join(result.output.split())


def issue_by_two(world: World, order_id: str, units: str, request: Path, out: Path, *extra: str) -> tuple[int, str]:
    """'lease issue' asks; a second person approves (dual control: the lease certifies a CA under the
    root); 'lease bundle' writes the bundle. Returns what 'lease bundle' said."""
    home = world.inst.home
    code, said = fg(home, "lease", "issue", "--order", order_id, "--units", units, "--request", str(request), *extra)
    assert code == 0 and "waits for a second person" in said, said
    asked = re.search(r"Request (\d+) ", said)
    assert asked is not None, said
    done = second_person_approves(world.inst, requests.get_approval(world.inst, int(asked.group(1))))
    return fg(home, "lease", "bundle", str(done["lease_id"]), "--out", str(out))


def test_an_agent_is_made_run_and_synced_from_the_command_line(world: World, tmp_path: Path) -> None:
    central, agent = world.inst.home, tmp_path / "agent"
    order_id = world.order(10)
    request, lease, sync = tmp_path / "request.json", tmp_path / "lease.json", tmp_path / "sync.json"
    assert fg(agent, "agent", "prepare", "--site", "cm-a", "--out", str(request))[0] == 0
    code, out = issue_by_two(world, order_id, "4", request, lease, "--expires-in", "8h")
    assert code == 0 and "4 units" in out, out
    code, out = fg(agent, "agent", "init", "--lease", str(lease))
    assert code == 0 and "Agent ready" in out, out
    code, out = fg(agent, "agent", "status")
    assert code == 0 and json.loads(out)["units"] == 4
    older = tmp_path / "older.json"
    assert fg(agent, "agent", "sync", "--out", str(older))[0] == 0
    assert fg(agent, "agent", "sync", "--out", str(sync))[0] == 0  # a sync is an agent event: newer
    code, out = fg(central, "lease", "sync", str(sync))
    assert code == 0 and json.loads(out)["units_synced"] == 0, out
    first = json.loads(out)
    # The same file again (its answer was lost) is answered again, and nothing is written.
    code, out = fg(central, "lease", "sync", str(sync))
    assert code == 0 and json.loads(out) == {**first, "resent": True}, out
    code, out = fg(central, "lease", "list", "--json")
    assert json.loads(out)[0]["state"] != "discrepancy"
    # An older file is a replay: one line, a code, and a discrepancy that stands.
    code, out = fg(central, "lease", "sync", str(older))
    assert code == 3 and "[lease_sync_replayed]" in out and "Traceback" not in out
    code, out = fg(central, "lease", "list", "--json")
    assert json.loads(out)[0]["state"] == "discrepancy"
    code, out = fg(
        central,
        "lease",
        "issue",
        "--order",
        order_id,
        "--units",
        "1",
        "--request",
        str(request),
    )
    assert code == 3 and "[lease_discrepancy]" in out


def test_a_changed_lease_file_is_one_line_at_init(world: World, tmp_path: Path) -> None:
    agent, request, lease = tmp_path / "agent", tmp_path / "request.json", tmp_path / "lease.json"
    fg(agent, "agent", "prepare", "--site", "cm-a", "--out", str(request))
    assert issue_by_two(world, world.order(5), "2", request, lease)[0] == 0
    lease.write_text(lease.read_text().replace('"units": 2', '"units": 5'))
    code, out = fg(agent, "agent", "init", "--lease", str(lease))
    assert code == 3 and "[lease_invalid]" in out, out


def test_the_agent_syncs_over_the_link_with_an_admin_token(world: World, tmp_path: Path) -> None:
    agent, request, lease = tmp_path / "agent", tmp_path / "request.json", tmp_path / "lease.json"
    fg(agent, "agent", "prepare", "--site", "cm-a", "--out", str(request))
    assert issue_by_two(world, world.order(5), "2", request, lease)[0] == 0
    assert fg(agent, "agent", "init", "--lease", str(lease))[0] == 0
    code, out = fg(agent, "agent", "sync", "--central", world.url, env={"FABGUARD_TOKEN": world.admin_token})
    assert code == 0 and json.loads(out)["entries"] == 2, out
    code, out = fg(agent, "agent", "sync", "--central", world.url, env={"FABGUARD_TOKEN": "fg_not_a_token"})
    assert code == 3 and "[unauthorized]" in out, out


def test_approving_a_lease_request_names_the_lease_it_made(world: World, tmp_path: Path) -> None:
    central, agent, request = world.inst.home, tmp_path / "agent", tmp_path / "request.json"
    fg(agent, "agent", "prepare", "--site", "cm-a", "--out", str(request))
    order_id = world.order(5)
    asked = []
    for _ in range(2):
        code, said = fg(central, "lease", "issue", "--order", order_id, "--units", "2", "--request", str(request))
        found = re.search(r"Request (\d+) ", said)
        assert code == 0 and found is not None, said
        asked.append(found.group(1))
    code, out = fg(central, "token", "create", "--name", "alex", "--role", "approver")
    token = re.search(r"fgt_[\w-]+", out)
    assert code == 0 and token is not None, out
    approver = {"FABGUARD_TOKEN": token.group(0)}
    code, out = fg(central, "approval", "approve", asked[0], env=approver)
    leases = [str(row["id"]) for row in json.loads(fg(central, "lease", "list", "--json")[1])]
    assert code == 0 and len(leases) == 1 and f"lease {leases[0]}" in out, out
    code, out = fg(central, "approval", "approve", asked[1], "--json", env=approver)
    assert code == 0, out
    view = json.loads(out)
    leases = [str(row["id"]) for row in json.loads(fg(central, "lease", "list", "--json")[1])]
    assert view["state"] == "approved" and view["result"]["lease_id"] == leases[1] != leases[0], out


def test_a_station_is_sent_to_the_agent_with_its_own_credentials(
    site: Site, agent: tuple[Instance, ServerThread]
) -> None:
    """``FABGUARD_STATION_SERVER`` points the enrolled station at the site agent: the unit's certificate comes
    from the agent CA (without it, the station asks the central server, which never saw the unit's test)."""
    inst, server = agent
    credentials = site.world.tmp / "fixtures" / "line-1"
    with agent_fixture(site, server) as client:
        device = tested_device(client, "SN-ST1")
    csr, out = site.world.tmp / "SN-ST1.csr", site.world.tmp / "units"
    csr.write_text(device.csr_pem())
    station = [
        sys.executable,
        "-m",
        "fabguard_station",
        "--dir",
        str(credentials),
        "provision",
        "--order",
        site.order_id,
    ]
    args = [*station, "--serial", "SN-ST1", "--csr", str(csr), "--out", str(out)]
    env = {**os.environ, "FABGUARD_STATION_SERVER": server.url}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    issued = x509.load_pem_x509_certificate((out / "SN-ST1.pem").read_bytes())
    assert issued.issuer == inst.cas.certificate("issuing").subject
    assert json.loads(fg(site.home, "agent", "status")[1])["used"] == 1


def test_a_lease_is_finished_at_the_site_and_closed_from_the_command_line(
    site: Site, agent: tuple[Instance, ServerThread], tmp_path: Path
) -> None:
    """'agent finish', 'agent sync', then 'lease close' (here through --server): the units not made go back."""
    from fabguard.cli.common import state

    _, server = agent
    terms = site.lease["lease"]
    assert isinstance(terms, dict)
    central, lease_id = site.world.inst.home, str(terms["lease_id"])
    with agent_fixture(site, server) as client:
        device = tested_device(client, "SN-CLI-C1")
        client.provision(site.order_id, device.serial, device.csr_pem())
    code, out = fg(central, "lease", "close", lease_id)
    assert code == 3 and "[lease_not_final]" in out and "Traceback" not in out, out
    code, out = fg(site.home, "agent", "finish")
    assert code == 0 and "1 of 3 units made" in out and "agent sync" in out, out
    package = tmp_path / "final.json"
    assert fg(site.home, "agent", "sync", "--out", str(package))[0] == 0
    assert fg(central, "lease", "sync", str(package))[0] == 0
    remote = ["--server", site.world.url, "--ca", str(site.world.root_ca)]
    try:
        result = runner.invoke(
            app,
            [*remote, "lease", "close", lease_id, "--json"],
            env={"COLUMNS": "200", "FABGUARD_TOKEN": site.world.admin_token},
        )
    finally:
        state.server = state.ca = None
    assert result.exit_code == 0, result.output
    closed = json.loads(result.output)
    assert (closed["leased"], closed["made"], closed["returned"], closed["order_used"]) == (3, 1, 2, 1)
    code, out = fg(central, "lease", "close", lease_id)  # a retry: nothing changes, the same figures
    assert code == 0 and "was closed before: 1 of 3 units made, 2 returned" in " ".join(out.split()), out
    code, out = fg(central, "lease", "list", "--json")
    assert [r["state"] for r in json.loads(out)] == ["closed"]
    code, out = fg(central, "lease", "list")  # the table: 3 units, 1 made, 2 returned, synced, closed
    assert code == 0 and f"{lease_id} │ {site.order_id} │ cm-a │ 3 │ 1 │ 2 │" in out and "│ closed │" in out, out
