"""Field checks across real ``fabguard serve`` processes: a nonce issued by one process is judged by another
and is single-use across both (PostgreSQL, two processes, one nonce key from the instance's key store);
and a process SIGKILLed while groups of checks are in flight gives no answer it did not commit, so no
nonce is ever answered genuine twice (SQLite and PostgreSQL).
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from fabguard.fixture.client import FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.access import tokens
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.store.field_models import FieldCheck, FieldNonce
from tests.served import ServerProcess
from tests.service.provisioning.test_quota_concurrency import (
    enrol_fixtures,
    new_order,
    set_up_catalog,
    upload_passing_tests,
)
from tests.support import create_pg_database, drop_pg_database, pg_admin_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    url = None
    if request.param == "postgres":
        if not pg_admin_url():
            pytest.skip("FABGUARD_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
        url = create_pg_database()
    try:
        init_instance(tmp_path / "home", organization="Acme Devices", database_url=url)
        inst = Instance.open(tmp_path / "home")
        try:
            yield inst
        finally:
            inst.close()
    finally:
        if url:
            drop_pg_database(url)


BATCHES = 40


@dataclass
class Cloud:
    """Genuine devices, and a field token's clients to each server process."""

    devices: list[SimulatedDevice]
    http: list[httpx.Client]


def _cloud(inst: Instance, urls: list[str], where: Path, count: int) -> Cloud:
    set_up_catalog(inst)
    order = new_order(inst, count)
    (creds,) = enrol_fixtures(inst, urls[0], where / "fixtures", 1)
    devices = [SimulatedDevice(f"SN-C{i:04d}") for i in range(count)]
    with FixtureClient(creds) as fixture:
        upload_passing_tests(fixture, [d.serial for d in devices])
        for d in devices:
            d.certificate_pem = fixture.provision(order, d.serial, d.csr_pem()).certificate_pem
    _, secret = tokens.create_token(inst, name="device-cloud", role="field", actor="test")
    ctx = ssl.create_default_context(cafile=str(inst.cas.cert_path("root")))
    headers = {"Authorization": f"Bearer {secret}"}
    return Cloud(devices, [httpx.Client(base_url=u, verify=ctx, headers=headers, timeout=30) for u in urls])


@pytest.mark.postgres
@pytest.mark.slow
def test_a_nonce_from_one_process_is_judged_by_another_and_is_single_use_across_both(
    home: Instance, server_processes: Callable[[Path], ServerProcess], tmp_path: Path
) -> None:
    if home.db.url.get_backend_name() != "postgresql":
        pytest.skip("several server processes share one database on PostgreSQL")
    a, b = server_processes(home.home), server_processes(home.home)
    cloud = _cloud(home, [a.url, b.url], tmp_path, 2)
    device = cloud.devices[0]
    try:
        # Both processes make challenges at once on first use: the nonce key is one for the instance.
        with ThreadPoolExecutor(2) as pool:
            firsts = list(pool.map(lambda h: h.post("/api/v1/field/challenge").json()["nonce"], cloud.http))
        for i, nonce in enumerate(firsts):
            other = cloud.http[1 - i]
            assert other.post("/api/v1/field/verify", json=device.field_answer(nonce)).json()["genuine"] is True
        for round_ in range(5):
            nonce = cloud.http[round_ % 2].post("/api/v1/field/challenges", json={"count": 1}).json()
            body = device.field_answer(nonce["challenges"][0]["nonce"], source="cloud-eu")

            def answer(i: int, body: dict[str, str] = body) -> str:
                http = cloud.http[i % 2]
                if i % 3 == 0:
                    r = http.post("/api/v1/field/verify-batch", json={"answers": [body]})
                    x: dict[str, Any] = r.json()["results"][0]
                else:
                    x = http.post("/api/v1/field/verify", json=body).json()
                return "genuine" if x.get("genuine") is True else str(x["error"]["code"])

            with ThreadPoolExecutor(12) as pool:
                outcomes = Counter(pool.map(answer, range(12)))
            assert outcomes == Counter({"genuine": 1, "nonce_used": 11}), outcomes
    finally:
        for h in cloud.http:
            h.close()
    assert len(list((home.home / "keys").glob("field-nonce*"))) == 1, "one nonce key, whoever made it"
    with home.db.read() as s:
        assert s.execute(select(func.count()).select_from(FieldCheck)).scalar_one() == 7
        assert s.execute(select(func.count()).select_from(FieldNonce)).scalar_one() == 7


@pytest.mark.slow
def test_a_server_killed_while_checks_are_in_flight_never_answers_a_nonce_genuine_twice(
    home: Instance, server_processes: Callable[[Path], ServerProcess], tmp_path: Path
) -> None:
    """Answers go out only after their group's commit: every genuine answer a client got is a recorded
    check, and an answer lost with the process is either not spent (genuine when sent again) or spent
    (nonce_used when sent again), never genuine twice."""
    server = server_processes(home.home)
    cloud = _cloud(home, [server.url], tmp_path, 20)
    http = cloud.http[0]
    batches = []
    for k in range(BATCHES):  # requests of 10 answers, each answer to its own nonce
        nonces = [c["nonce"] for c in http.post("/api/v1/field/challenges", json={"count": 10}).json()["challenges"]]
        batches.append([cloud.devices[(k + i) % 20].field_answer(n, source="cloud") for i, n in enumerate(nonces)])
    http.close()
    genuine: Counter[str] = Counter()
    check_ids: list[int] = []
    lost: list[list[dict[str, str]]] = []
    lock = threading.Lock()
    killed, some_answered = threading.Event(), threading.Event()

    def send(batch: list[dict[str, str]]) -> None:
        ctx = ssl.create_default_context(cafile=str(home.cas.cert_path("root")))
        headers = dict(cloud.http[0].headers)
        try:
            with httpx.Client(base_url=server.url, verify=ctx, headers=headers, timeout=30) as h:
                results = h.post("/api/v1/field/verify-batch", json={"answers": batch}).json()["results"]
        except httpx.TransportError:
            with lock:
                lost.append(batch)
            return
        with lock:
            for body, x in zip(batch, results, strict=True):
                if x.get("genuine") is True:
                    genuine[body["nonce"]] += 1
                    check_ids.append(int(x["check_id"]))
        some_answered.set()

    def killer() -> None:  # SIGKILL once the first batch is answered: the others are queued or in a group
        some_answered.wait(60)
        server.kill()
        killed.set()

    threading.Thread(target=killer, daemon=True).start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, batches))
    killed.wait(30)
    assert server.proc is not None and server.proc.returncode is not None
    server.start()  # same home, same port
    lost_before = len(lost)
    for batch in list(lost):
        send(batch)
    assert len(lost) == lost_before, "after the restart every batch is answered"
    assert genuine and max(genuine.values()) == 1, "a nonce answered genuine twice"
    with home.db.read() as s:
        recorded = set(s.execute(select(FieldCheck.id).where(FieldCheck.genuine.is_(True))).scalars())
        spent = s.execute(select(func.count()).select_from(FieldNonce)).scalar_one()
    assert set(check_ids) <= recorded, "an answer went out for a check that was not committed"
    assert spent == len(recorded) <= 10 * BATCHES
    print(
        f"killed with {lost_before} of {BATCHES} batches unanswered; {len(genuine)} nonces answered genuine, "
        f"{len(recorded)} checks recorded (a recorded check whose answer was lost is nonce_used when sent again)"
    )
