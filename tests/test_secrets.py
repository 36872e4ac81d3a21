"""No secret of a full run reaches a log, a process title, a traceback or an error message.

One run, as an operator would do it, once with each log format (``--log-format text`` and ``json``):
``fabguard init``, ``token create``, ``fixture add`` and the catalog through the CLI, ``fabguard serve
--log-level debug --access-log`` as a real process, the
fixture enrolled with ``fabguard fixture enroll``, units provisioned through the SDK, refused requests
(bad, unknown and wrong-role tokens, the dashboard stream's ``?token=``, a used enrolment token) and a
server started with a wrong passphrase. Then everything captured is searched for every secret of the
run. A secret may appear only where it is handed over, once: on the stdout of the command that made it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fabguard.api.redaction import RedactSecrets, redact
from fabguard.fixture.client import Credentials, FabGuardClientError, FixtureClient
from fabguard.fixture.client import enroll as sdk_enroll
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record

SRC = Path(__file__).resolve().parents[1] / "src"
PEM_MARKER = "PRIVATE KEY"
FABGUARD = (sys.executable, "-m", "fabguard.cli.main")
SERVE_AT_DEBUG = ("--log-level", "debug", "--access-log")


@dataclass
class Run:
    """Everything a run printed, and the secrets it made."""

    home: Path
    env: dict[str, str] = field(repr=False)
    captured: dict[str, str] = field(default_factory=dict, repr=False)  # where -> text
    handed_over: dict[str, str] = field(default_factory=dict, repr=False)  # secret -> the one place it may appear

    def cli(self, name: str, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [*FABGUARD, "--home", str(self.home), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.captured[f"{name}.stdout"] = done.stdout
        self.captured[f"{name}.stderr"] = done.stderr
        assert (done.returncode == 0) is ok, (args, done.stdout, done.stderr)
        return done.stdout

    def minted(self, name: str, prefix: str) -> str:
        """The secret the command ``name`` printed for its user (allowed there, and nowhere else)."""
        found = re.findall(re.escape(prefix) + r"[A-Za-z0-9_\-]+", self.captured[f"{name}.stdout"])
        assert len(found) == 1, f"{name} must print its secret once, not {len(found)} times"
        self.handed_over[found[0]] = f"{name}.stdout"
        return found[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_serving(url: str, ca: Path, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            httpx.get(f"{url}/api/v1/health", verify=ssl.create_default_context(cafile=str(ca)), timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not start")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_full_run_at_debug_level_leaks_no_secret(tmp_path: Path, log_format: str) -> None:
    passphrase = "pp-" + secrets.token_urlsafe(24)
    webhook_secret = "wh-" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABGUARD_")}
    env.update(FABGUARD_KEY_PASSPHRASE=passphrase, PYTHONPATH=str(SRC), COLUMNS="200", NO_COLOR="1")
    run = Run(tmp_path / "home", env)
    port = _free_port()
    url = f"https://127.0.0.1:{port}"

    run.cli("init", "init", "--org", "Acme Devices")
    admin = run.minted("init", "fgt_")
    as_admin = {"FABGUARD_TOKEN": admin}
    run.cli("token-create", "token", "create", "--name", "erin", "--role", "engineer", env=as_admin)
    engineer = run.minted("token-create", "fgt_")
    (run.home / "webhooks.json").write_text(
        json.dumps([{"name": "soc", "url": f"http://127.0.0.1:{_free_port()}/hook", "secret": webhook_secret}])
    )

    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                *FABGUARD,
                *("--home", str(run.home), "serve", "--port", str(port), *SERVE_AT_DEBUG),
                *("--log-format", log_format),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        root = run.home / "ca" / "root.pem"
        _wait_until_serving(url, root, server)
        run.captured["server.cmdline"] = Path(f"/proc/{server.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        verify = ssl.create_default_context(cafile=str(root))
        with httpx.Client(
            base_url=url, verify=verify, timeout=30, headers={"Authorization": f"Bearer {admin}"}
        ) as http:
            for path, body in (
                ("/api/v1/products", {"id": "sensor", "name": "Sensor"}),
                ("/api/v1/sites", {"id": "cm-a", "name": "CM A"}),
                ("/api/v1/orders", {"id": "po-1", "product_id": "sensor", "site_id": "cm-a", "quota": 2}),
            ):
                assert http.post(path, json=body).status_code == 201, path
        run.cli("fixture-add", "fixture", "add", "fx-1", "--site", "cm-a", env=as_admin)
        enrolment = run.minted("fixture-add", "fge_")
        station = tmp_path / "station"
        enroll = ["fixture", "enroll", "--server", url, "--out", str(station), "--ca", str(root)]
        run.cli("enroll", *enroll, env={"FABGUARD_ENROLLMENT_TOKEN": enrolment})
        with pytest.raises(FabGuardClientError) as used:
            sdk_enroll(url, enrolment, tmp_path / "again", ca_file=root)
        run.captured["enroll-again"] = str(used.value)

        with FixtureClient(Credentials.load(station)) as fx:
            for serial in ("SN-1", "SN-2"):
                device = SimulatedDevice(serial)
                fx.upload_test_record(openhtf_record(serial, "fx-1", fail=False, rng=random.Random(1)))
                fx.provision("po-1", serial, device.csr_pem())
            with pytest.raises(FabGuardClientError):
                fx.provision("po-1", "SN-3", SimulatedDevice("SN-3").csr_pem())

        with httpx.Client(base_url=url, verify=verify, timeout=30) as http:
            for bad in ("fgt_" + secrets.token_urlsafe(32), engineer[:-3] + "xyz", "not-a-token"):
                run.handed_over.setdefault(bad, "nowhere")
                answer = http.get("/api/v1/orders", headers={"Authorization": f"Bearer {bad}"})
                assert answer.status_code == 401
                run.captured[f"bad-token {bad[:6]}"] = answer.text
            answer = http.post(
                "/api/v1/tokens", json={"name": "x", "role": "admin"}, headers={"Authorization": f"Bearer {engineer}"}
            )
            assert answer.status_code == 403
            run.captured["wrong-role"] = answer.text
            answer = http.get("/api/v1/stream", params={"token": engineer[:-3] + "xyz"})
            assert answer.status_code == 401
            with http.stream("GET", "/api/v1/stream", params={"token": admin}) as stream:
                assert stream.status_code == 200
                next(stream.iter_lines())
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    run.captured["server.log"] = log.read_text(errors="replace")

    run.cli(
        "wrong-passphrase",
        "serve",
        "--port",
        str(port),
        ok=False,
        env={"FABGUARD_KEY_PASSPHRASE": "wrong-" + passphrase},
    )

    server_log = run.captured["server.log"]
    assert "/api/v1/stream?token=[redacted] HTTP/1.1" in server_log, "the access log was not captured"
    if log_format == "json":  # every line one object; FabGuard's own records and the request lines among them
        records = [json.loads(line) for line in server_log.splitlines() if line.strip()]
        assert {"time", "level", "logger", "message"} <= set(records[0]), records[0]
        assert any(
            r["logger"] == "fabguard.service.access.tokens" and r["message"] == "refused an unknown API token"
            for r in records
        ), "FabGuard's own log was not captured"
        requests = [r for r in records if r["logger"] == "fabguard.access"]
        assert {(r["route"], r["status"], r.get("code")) for r in requests} >= {
            ("/api/v1/orders", 401, "unauthorized"),
            ("/api/v1/tokens", 403, "forbidden"),
            ("/api/v1/units/provision", 409, "test_missing"),  # SN-3 has no test record
        }, requests
        assert all(r["request_id"] for r in requests)
    else:
        assert "fabguard.service.access.tokens: refused an unknown API token" in server_log, (
            "FabGuard's own log was not"
        )
    refusal = run.captured["wrong-passphrase.stderr"].strip()
    assert "passphrase" in refusal and len(refusal.splitlines()) == 1, refusal
    secrets_of_run = {
        passphrase: "nowhere",
        "wrong-" + passphrase: "nowhere",
        webhook_secret: "nowhere",
        PEM_MARKER: "nowhere",
        **run.handed_over,
    }
    leaks = [
        f"{secret[:8]}... in {where}"
        for secret, allowed in secrets_of_run.items()
        for where, text in run.captured.items()
        if where != allowed and secret in text
    ]
    assert not leaks, leaks
    tracebacks = [where for where, text in run.captured.items() if "Traceback (most recent call last)" in text]
    assert not tracebacks, {w: run.captured[w][-2000:] for w in tracebacks}


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/v1/stream?token={t}&x=1 HTTP/1.1",
        "ASGI scope {{'headers': [(b'authorization', b'Bearer {t}')]}}",
        '{{"Authorization": "Bearer {t}"}}',
        "refused the enrolment token {t}",
        "ASGI scope {{'headers': [(b'cookie', b'fabguard_session={t}')]}}",
    ],
)
def test_the_log_filter_redacts_credentials_wherever_they_appear(line: str) -> None:
    for token in (
        "fgt_" + secrets.token_urlsafe(32),
        "fge_" + secrets.token_urlsafe(24),
        "fgs_" + secrets.token_urlsafe(32),
        "plain-" + "s3cr3t" * 4,
    ):
        text = line.format(t=token)
        if token.startswith("plain") and "token=" not in text and "uthorization" not in text:
            continue  # a secret with no mark of its own is kept out of logs by never logging it
        assert token not in redact(text), text
        assert "[redacted]" in redact(text)


def test_the_log_filter_redacts_a_private_key_in_a_traceback() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"
    try:
        raise ValueError(f"could not load {pem}")
    except ValueError:
        record = logging.LogRecord("fabguard", logging.ERROR, __file__, 1, "failed: %s", (pem,), sys.exc_info())
    assert RedactSecrets().filter(record)
    line = logging.Formatter().format(record)
    assert PEM_MARKER not in line and "MIGHAgEA" not in line and "ValueError" in line
