"""The container image (packaging/container): its Containerfile keeps the promises docs/container.md makes, the
compose file wires PostgreSQL to N servers through the proxy, and, when FABGUARD_TEST_CONTAINER=1 asks for it
(the build takes three to five minutes), the image is built here from
Debian's packages with ./build and runs, as its own unprivileged user, the demo line and its health check."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "packaging" / "container"
BUILD_ASKED = os.environ.get("FABGUARD_TEST_CONTAINER") == "1"


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions (continuation lines joined), comments left out."""
    text = re.sub(r"\\\n\s*", " ", (HERE / "Containerfile").read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_the_containerfile_runs_as_an_unprivileged_user_with_the_instance_on_a_volume_and_a_health_check() -> None:
    steps = instructions()
    users = [rest for word, rest in steps if word == "USER"]
    assert users == ["fabguard"]
    assert 'VOLUME ["/var/lib/fabguard"]' in [f"VOLUME {rest}" for word, rest in steps if word == "VOLUME"]
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "FABGUARD_HOME=/var/lib/fabguard" in env
    (health,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert '"fabguard-healthcheck", "/livez"' in health
    assert any(word == "FROM" for word, _ in steps)
    # Nothing but the wheels ./build made is installed: no package index at build time.
    assert any("--no-index" in rest for word, rest in steps if word == "RUN")


def test_the_compose_file_runs_postgresql_and_several_servers_behind_a_tcp_proxy() -> None:
    compose = yaml.safe_load((HERE / "compose.yaml").read_text(encoding="utf-8"))
    services: dict[str, Any] = compose["services"]
    servers = [name for name, s in services.items() if s.get("image", "").startswith("localhost/fabguard:")]
    assert "postgres" in services
    serving = [n for n in servers if "serve" in (services[n].get("command") or [])]
    assert len(serving) >= 2, servers
    for name in serving:
        service = services[name]
        assert "FABGUARD_DATABASE_URL" in str(service.get("environment"))
        assert any("/var/lib/fabguard" in str(v) for v in service.get("volumes", []))
        assert "key_passphrase" in str(service.get("secrets"))
    # The proxy passes TLS through (fixtures' client certificates are FabGuard's to verify).
    proxy_config = (HERE / "haproxy.cfg").read_text(encoding="utf-8")
    assert "mode tcp" in proxy_config and "mode http" not in proxy_config
    for name in serving:
        assert f"{name}:8443" in proxy_config


# -------------------------------------------------------------------------- the image, built and run here

needs_build = pytest.mark.skipif(
    not BUILD_ASKED, reason="set FABGUARD_TEST_CONTAINER=1 to build the image here (three to five minutes)"
)


def run(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    for tool in ("mmdebstrap", "buildah", "podman"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install mmdebstrap buildah podman)")
    tag = f"localhost/fabguard-test:{uuid.uuid4().hex[:8]}"
    built = run(HERE / "build", tag)
    assert built.returncode == 0, built.stderr[-4000:]
    try:
        yield tag
    finally:
        run("podman", "rmi", "--force", tag)


@pytest.fixture
def container(image: str) -> Iterator[str]:
    made = run("buildah", "from", "--quiet", image, timeout=120)
    assert made.returncode == 0, made.stderr
    name = made.stdout.strip()
    try:
        yield name
    finally:
        run("buildah", "rm", name, timeout=120)


def inside(container: str, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The image's own command line run in the container (chroot isolation: podman cannot start containers
    in this sandbox), as the image's user."""
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return run("buildah", "run", "--isolation", "chroot", *flags, container, "--", *command, timeout=300)


@needs_build
@pytest.mark.slow
def test_the_image_is_configured_as_the_containerfile_says(image: str) -> None:
    inspected = run("buildah", "inspect", "--type", "image", image, timeout=60)
    config = json.loads(inspected.stdout)["Docker"]["config"]
    assert config["User"] == "fabguard"
    assert config["Healthcheck"]["Test"] == ["CMD", "fabguard-healthcheck", "/livez"]
    assert "/var/lib/fabguard" in config["Volumes"]
    assert config["Entrypoint"] == ["fabguard"] and config["Cmd"][0] == "serve"


@needs_build
@pytest.mark.slow
def test_the_demo_line_runs_inside_the_image_as_its_unprivileged_user(container: str) -> None:
    who = inside(container, "id", "-u")
    assert who.returncode == 0 and who.stdout.strip() not in ("", "0"), who
    demo = inside(container, "fabguard", "demo", "--units", "12", "--quota", "10")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "overproduction stopped at the quota" in demo.stdout
    assert "cloned keys caught" in demo.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@needs_build
@pytest.mark.slow
def test_the_health_check_answers_for_a_server_in_the_image(container: str) -> None:
    port, http_port = free_port(), free_port()
    script = f"""
set -e
umask 077
head -c 24 /dev/urandom | base64 > /tmp/passphrase
export FABGUARD_KEY_PASSPHRASE_FILE=/tmp/passphrase
fabguard init --org "Acme Devices" --hostname fabguard.example >/dev/null
if fabguard-healthcheck /livez; then echo "healthy with no server"; exit 9; fi
fabguard serve --host 127.0.0.1 --port {port} --http-port {http_port} >/tmp/serve.log 2>&1 &
for i in $(seq 150); do fabguard-healthcheck /livez >/dev/null && break; sleep 0.2; done
fabguard-healthcheck /livez
fabguard-healthcheck /readyz
kill %1
wait || true
"""
    checked = inside(container, "bash", "-c", script, env={"FABGUARD_HEALTH_PORT": str(port)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert '200 {"status":"alive"' in checked.stdout
    assert '200 {"status":"ready"' in checked.stdout
