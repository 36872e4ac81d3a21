"""A lease's agent CA reaches the TLS client trust of every process of a running ``serve --workers 2`` without
a restart: a certificate the agent CA signed completes the handshake (and gets the app's answer) on both
workers once a second person approved the lease. Real processes: the server, and the CLI that approves."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.values import Serial
from fabguard.pki import profiles
from fabguard.service.core.instance import Instance
from tests.served import FABGUARD, cli, free_port, init_instance, serve, stop, wait_healthy
from tests.support import fresh_pg_database


def _until(condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {seconds} s: {what}")


def _agent_unit(agent: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A certificate the agent's CA signs (its key is in the agent's home), and its key, as PEM files."""
    inst = Instance.open(agent)
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = profiles.idevid_certificate(
            inst.cas.issuer("issuing"), key.public_key(), Serial("SN-AGENT-1"), "Acme Devices", "sensor",
            datetime.now(UTC),
        )  # fmt: skip
    finally:
        inst.close()
    cert_file, key_file = tmp_path / "unit.pem", tmp_path / "unit.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _handshakes(url: str, trust: Path, unit: tuple[Path, Path]) -> list[int | str]:
    """Eight new connections presenting the unit's certificate (they land on either worker): each one's HTTP
    status, or the TLS error that ended it."""
    answers: list[int | str] = []
    for _ in range(8):
        ctx = ssl.create_default_context(cafile=str(trust))
        ctx.load_cert_chain(str(unit[0]), str(unit[1]))
        try:
            with httpx.Client(verify=ctx, timeout=10) as client:
                answers.append(client.post(f"{url}/.well-known/est/simplereenroll", content=b"").status_code)
        except httpx.TransportError as exc:
            answers.append(type(exc).__name__)
    return answers


@pytest.mark.slow
def test_every_worker_trusts_a_new_agent_ca_without_a_restart(tmp_path: Path) -> None:
    port, central, agent = free_port(), tmp_path / "central", tmp_path / "agent"
    url = f"https://127.0.0.1:{port}"
    with fresh_pg_database() as database:
        init_instance(central, port, "--database-url", database)
        cli(central, "product", "add", "sensor", "--name", "Sensor")
        cli(central, "site", "add", "cm-a", "--name", "CM A")
        cli(central, "order", "create", "--id", "po-1", "--product", "sensor", "--site", "cm-a", "--quota", "50")
        approver = re.findall(
            r"fgt_[\w-]+", cli(central, "token", "create", "--name", "alex", "--role", "approver").stdout
        )
        log = tmp_path / "serve.log"
        server = serve(central, log, port, "--workers", "2")
        try:
            trust = central / "ca" / "root.pem"
            wait_healthy(url, trust, server)
            _until(lambda: log.read_text().count("Application startup complete") == 2, "both workers serve")
            request, lease = tmp_path / "request.json", tmp_path / "lease.json"
            cli(agent, "agent", "prepare", "--site", "cm-a", "--out", str(request))
            asked = cli(central, "lease", "issue", "--order", "po-1", "--units", "5", "--request", str(request))
            request_id = re.search(r"Request (\d+) ", asked.stdout)
            assert request_id is not None, asked.stdout
            done = _approve(central, request_id.group(1), approver[0])
            lease_id = re.search(r"lease (lease-[0-9a-f]+)", done)
            assert lease_id is not None, done
            cli(central, "lease", "bundle", lease_id.group(1), "--out", str(lease))
            cli(agent, "agent", "init", "--lease", str(lease))
            unit = _agent_unit(agent, tmp_path)
            time.sleep(1.2)  # a worker looks at the trust file at most once a second
            answers = _handshakes(url, trust, unit)
            # The handshake completes on either worker; the app then decides (no such unit here: a 4xx).
            assert all(isinstance(a, int) and 400 <= a < 500 for a in answers), answers
        finally:
            stop(server)


def _approve(home: Path, request_id: str, token: str) -> str:
    """``fabguard approval approve`` by a second person (their token in FABGUARD_TOKEN), in its own process."""
    done = subprocess.run(
        [*FABGUARD, "--home", str(home), "approval", "approve", request_id],
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "FABGUARD_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
