"""A ``fabguard`` command line and a ``fabguard serve`` in subprocesses of their own, as an operator runs them."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

FABGUARD = (sys.executable, "-m", "fabguard.cli.main")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*FABGUARD, "--home", str(home), *args],
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode == 0) is ok, (args, done.stdout, done.stderr)
    return done


def init_instance(home: Path, port: int, *extra: str) -> str:
    """``fabguard init`` for a server on 127.0.0.1:``port``; the admin token."""
    done = cli(home, "init", "--org", "Acme Devices", "--public-url", f"https://127.0.0.1:{port}", *extra)
    [admin] = re.findall(r"fgt_[A-Za-z0-9_\-]+", done.stdout)
    return admin


def serve(home: Path, log: Path, port: int, *args: str, level: str = "info") -> subprocess.Popen[bytes]:
    """``fabguard serve`` on ``port``, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [*FABGUARD, "--home", str(home), "serve", "--log-level", level, "--log-format", "text", "--port", str(port), *args],
            env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def wait_healthy(url: str, trust: Path, server: subprocess.Popen[bytes]) -> None:
    verify = ssl.create_default_context(cafile=str(trust))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/api/v1/health", verify=verify, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not start")
