"""The lean provisioning route against FastAPI's, in process: CPU per request of the same requests.

    PYTHONPATH=src .venv/bin/python bench/lean_route.py [--requests N] [--rounds R]

One SQLite instance, one fixture, one issued unit; each request is a resend of that unit (200, its
certificate again: the writer reads and answers, nothing is written), through the whole ASGI app (request
log, body limit, routing, exception middleware) with the provisioning writer running, as `fabguard serve`
has it. The two apps differ only in the lean route (ADR 0021): with it, and with it taken out (FastAPI's
route alone, as before). Rounds alternate; the figure is process CPU time per request (all threads: the
loop, the writer and the anyio workers), which other load on the machine moves less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("FABGUARD_KEY_PASSPHRASE", "bench-lean-route-passphrase")

from tests.api.test_provision_contract import build_world, unit_body
from tests.support import new_instance

from fabguard.api import hot_routes
from fabguard.api.app import create_app


def _scope(cert: str, body: bytes) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/api/v1/units/provision",
        "raw_path": b"/api/v1/units/provision",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
        "extensions": {"tls": {"client_cert_chain": [cert]}},
    }


async def _requests(app: Any, cert: str, body: bytes, n: int, expect: int = 200) -> float:
    statuses: list[int] = []
    started = time.process_time()
    for _ in range(n):
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(_scope(cert, body), receive, send)
    took = time.process_time() - started
    assert set(statuses) == {expect}, set(statuses)
    return took / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    inst = new_instance(Path(tempfile.mkdtemp()) / "home")
    world = build_world(inst)
    body = unit_body(world.tested[0])
    lean, plain = create_app(inst), create_app(inst)
    routes = plain.app.app.router.routes
    routes[:] = [r for r in routes if not isinstance(r, hot_routes.LeanRoute)]
    figures: dict[str, list[float]] = {"lean": [], "fastapi": []}

    async def run() -> None:
        for app in (lean, plain):
            app.app.app.state.committer.start()
        try:
            await _requests(lean, world.cert, body, 1, expect=201)  # issue the unit, remember the fixture
            for _ in range(args.rounds):
                figures["fastapi"].append(await _requests(plain, world.cert, body, args.requests))
                figures["lean"].append(await _requests(lean, world.cert, body, args.requests))
        finally:
            for app in (lean, plain):
                app.app.app.state.committer.stop()

    asyncio.run(run())
    inst.close()
    for name, values in figures.items():
        rounds = ", ".join(f"{v * 1e6:.0f}" for v in values)
        print(f"{name:8s} CPU per request: median {statistics.median(values) * 1e6:.0f} µs (rounds: {rounds})")
    saved = statistics.median(figures["fastapi"]) - statistics.median(figures["lean"])
    print(f"saved by the lean route: {saved * 1e6:.0f} µs of CPU per request")


if __name__ == "__main__":
    main()
