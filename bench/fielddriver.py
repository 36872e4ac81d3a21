"""Field checks driven as a device cloud drives them: bench/peer.py's field-check mode.

Devices provisioned through the bench line's real server answer challenges; K client threads (a field
token each, keep-alive HTTPS with httpx) loop: ask B challenges (``/field/challenges``, or one
``/field/challenge`` when B is 1), have B devices sign them, post the answers (``/field/verify-batch``,
or ``/field/verify`` when B is 1), and count the genuine verdicts. A check is counted from its
challenge to its verdict; nothing is pre-signed.
"""

from __future__ import annotations

import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from provision import STOP, BenchLine, RunResult, log, upload_passing_tests  # bench/provision.py

from fabguard.domain.values import ProductId, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.access import tokens
from fabguard.service.catalog import orders


def provision_devices(line: BenchLine, site: str, prefix: str, count: int) -> list[SimulatedDevice]:
    """``count`` genuine devices: an order of their own, passing test records, then one certificate each."""
    order = orders.create_order(
        line.inst, product_id=ProductId(line.product), site_id=SiteId(site), quota=count, actor="bench"
    ).id
    devices = [SimulatedDevice(f"{prefix}{i:05d}") for i in range(count)]
    upload_passing_tests(line.clients, [d.serial for d in devices])

    def provision(i: int) -> None:
        d = devices[i]
        d.certificate_pem = line.clients[i % len(line.clients)].provision(order, d.serial, d.csr_pem()).certificate_pem

    with ThreadPoolExecutor(len(line.clients)) as pool:
        list(pool.map(provision, range(count)))
    return devices


def field_token(line: BenchLine, name: str) -> str:
    _, secret = tokens.create_token(line.inst, name=name, role="field", actor="bench")
    return secret


def check_devices(
    url: str,
    root_ca: Path,
    token: str,
    devices: list[SimulatedDevice],
    *,
    checks: int,
    clients: int,
    batch: int,
    time_cap_s: float,
) -> RunResult:
    """Run ``checks`` checks (or until the time cap) from ``clients`` threads, ``batch`` per request."""
    ctx = ssl.create_default_context(cafile=str(root_ca))
    lock = threading.Lock()
    started = [0]
    result = RunResult(mode=f"field, {batch}/request", units=0, wall_s=0.0)
    deadline = time.monotonic() + time_cap_s

    def take() -> int:
        with lock:
            n = min(batch, checks - started[0])
            started[0] += max(n, 0)
            return n

    def run(k: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, verify=ctx, headers=headers, timeout=60) as http:
            at = k
            while not STOP.is_set() and time.monotonic() < deadline:
                n = take()
                if n <= 0:
                    return
                group = [devices[(at + i) % len(devices)] for i in range(n)]
                at += n * clients
                t0 = time.perf_counter()
                verdicts = _one_round(http, group, source="bench-cloud")  # one place: no two-places signal
                elapsed = time.perf_counter() - t0
                with lock:
                    result.latencies_s.append(elapsed)
                    result.units += n
                    for v in verdicts:
                        if v == "genuine":
                            result.issued += 1
                        else:
                            result.refused[v] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(run, k) for k in range(clients)]:
            f.result()
    result.wall_s = time.perf_counter() - t0
    if result.refused:
        log(f"field checks not genuine or refused: {dict(result.refused.most_common(5))}")
    return result


def _one_round(http: httpx.Client, group: list[SimulatedDevice], *, source: str) -> list[str]:
    """One request's worth of checks: the verdict of each (``genuine``, a reason, or an error code)."""
    if len(group) == 1:
        nonce = http.post("/api/v1/field/challenge").json()["nonce"]
        r = http.post("/api/v1/field/verify", json=group[0].field_answer(nonce, source=source))
        return [_verdict(r.json())]
    r = http.post("/api/v1/field/challenges", json={"count": len(group)})
    nonces = [c["nonce"] for c in r.json()["challenges"]]
    answers = [d.field_answer(n, source=source) for d, n in zip(group, nonces, strict=True)]
    r = http.post("/api/v1/field/verify-batch", json={"answers": answers})
    body = r.json()
    if "results" not in body:
        return [f"http_{r.status_code}"] * len(group)
    return [_verdict(v) for v in body["results"]]


def _verdict(body: dict[str, object]) -> str:
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))  # type: ignore[union-attr]
    if body.get("genuine") is True:
        return "genuine"
    return str(body.get("reason"))
