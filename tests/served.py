"""A ``fabguard`` command line and a ``fabguard serve`` in subprocesses of their own, as an operator runs them;
``ServerProcess``, one such server the tests start, kill and stop (``tests/conftest.py``'s ``server_processes``
starts them and stops every one at teardown)."""

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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fabguard_command() -> list[str]:
    """The installed ``fabguard`` entry point of this venv (falls back to ``python -m``)."""
    exe = Path(sys.executable).with_name("fabguard")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "fabguard.cli.main"]


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


class ServerProcess:
    """``fabguard --home H serve`` as a real child process on a fixed loopback port."""

    def __init__(self, home: Path, port: int, log: Path, workers: int = 1) -> None:
        self.home = home
        self.port = port
        self.log = log
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        cmd = [
            *fabguard_command(),
            "--home",
            str(self.home),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--workers",
            str(self.workers),
        ]
        with self.log.open("ab") as out:
            out.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n".encode())
            out.flush()
            # The passphrase (FABGUARD_KEY_PASSPHRASE, set by conftest) is inherited.
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.home / "ca" / "root.pem"))
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with httpx.Client(verify=ctx, timeout=2.0) as http:
                    if http.get(f"{self.url}/api/v1/health").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer /api/v1/health in {timeout} s:\n{self.log_text()}")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """The live worker processes of a ``--workers N`` server (children of this one)."""
        assert self.proc is not None
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if (
                int(fields[1]) == self.proc.pid and fields[0] != "Z" and b"spawn_main" in cmdline
            ):  # not the resource tracker
                pids.append(int(stat.parent.name))
        return sorted(pids)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight requests and transactions die with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"
