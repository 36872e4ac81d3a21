"""Ingest through the product's own path: batched test-record uploads, and analytics kept current meanwhile.

    .venv/bin/python bench/ingest.py [--records 40000] [--clients 4] [--database-url URL --workers 2]

``bench/analytics.py`` loads a million records straight into the tables, to time the dashboard on
them; this bench times what a line's uploads cost on the way in. Synthetic OpenHTF records of 20
measurements each (the shape ``bench/analytics.py`` makes), in batches of 200 (the most one request
may hold), from 8 fixtures at 2 sites:

1. **In process**: ``testrecords.record_tests``, the service the batch endpoint calls: each record
   checked and written canonically, the batch's records, events and Merkle leaves in one transaction.
   Generating the records is not timed.
2. **Over HTTPS**: ``fabguard serve`` in its own process(es) (``--workers``, PostgreSQL only for more
   than one), fixtures enrolled with their own client certificates, ``--clients`` threads posting the
   batches (request bodies built before the clock starts). The server processes run their analytics
   projector as in production, so the bench also reports when the projection had folded the last
   upload: measurements / that time is the ingest rate *with the dashboard current*.

Clients, server processes and PostgreSQL share this machine's cores: the figures are for the whole
loop on this machine, not for the server alone.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from provision import ServerProcess  # bench/provision.py

from analytics import FIXTURES, PROCEDURE, make_instance, record_json  # bench/analytics.py
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId
from fabguard.fixture.client import Credentials, FixtureClient, enroll
from fabguard.runtime import tune_gc
from fabguard.service.catalog import fixtures
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from fabguard.store import rollups
from fabguard.store.eventlog import event_count

BATCH = 200
MEASUREMENTS = len(PROCEDURE)


def batches(n: int, prefix: str) -> list[tuple[str, str, list[str]]]:
    """(fixture, site, record JSON texts) per batch of up to 200; each batch from one fixture."""
    rng = random.Random(prefix)
    out = []
    start_ms = int(time.time() * 1000) - 3_600_000
    for b, first in enumerate(range(0, n, BATCH)):
        fixture_id, site = FIXTURES[b % len(FIXTURES)]
        texts = [
            record_json(f"{prefix}{i:09d}", fixture_id, start_ms + i, rng.random() < 0.03, rng)
            for i in range(first, min(first + BATCH, n))
        ]
        out.append((fixture_id, site, texts))
    return out


def in_process(inst: Instance, n: int) -> float:
    """Seconds to store n records through ``record_tests`` (parsing the JSON texts is not timed)."""
    took = 0.0
    for fixture_id, site, texts in batches(n, "IP"):
        records = [json.loads(t) for t in texts]
        t = time.perf_counter()
        results = testrecords.record_tests(inst, FixtureFacts(fixture_id, site, False), records)
        took += time.perf_counter() - t
        assert all(r["status"] == "stored" for r in results), results[:1]
    return took


def over_https(inst: Instance, n: int, clients: int, workers: int, where: Path) -> dict[str, float]:
    """Upload n records to a server in its own process(es); seconds to upload, and until the projection
    had folded every upload."""
    server = ServerProcess(inst.home, where / "server.log", workers=workers)
    server.start(timeout=60)
    try:
        url = server.url
        creds: dict[str, Credentials] = {}
        for fixture_id, _ in FIXTURES:
            token = fixtures.new_enrollment_token(inst, FixtureId(fixture_id), actor="bench")
            creds[fixture_id] = enroll(url, token, where / fixture_id, ca_file=inst.cas.cert_path("root"))
        sessions = {f: FixtureClient(c) for f, c in creds.items()}
        bodies = [
            (fixture_id, ('{"records":[' + ",".join(texts) + "]}").encode()) for fixture_id, _, texts in batches(n, "H")
        ]
        with inst.db.read() as s:
            before = event_count(s)
        queue = iter(bodies)
        lock = threading.Lock()
        errors: list[BaseException] = []
        stored = [0]

        def client() -> None:
            try:
                while True:
                    with lock:
                        item = next(queue, None)
                    if item is None:
                        return
                    fixture_id, body = item
                    response = sessions[fixture_id]._http.post(
                        "/api/v1/test-records/batch", content=body, headers={"content-type": "application/json"}
                    )
                    response.raise_for_status()
                    results: list[dict[str, Any]] = response.json()["results"]
                    assert all(r["status"] == "stored" for r in results), results[:1]
                    with lock:
                        stored[0] += len(results)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        uploaded = time.perf_counter() - t
        if errors:
            raise errors[0]
        assert stored[0] == n
        target = before + n  # one test.recorded event per record
        while True:
            with inst.db.read() as s:
                if rollups.read_cursor(s) >= target:
                    break
            time.sleep(0.02)
        current = time.perf_counter() - t
        for c in sessions.values():
            c.close()
        return {"upload_s": uploaded, "current_s": current}
    finally:
        server.stop()


def line(label: str, seconds: float, n: int) -> str:
    return (
        f"  {label:<44} {seconds:7.1f} s  {n * MEASUREMENTS / seconds:>10,.0f} measurements/s  "
        f"{n / seconds:>7,.0f} records/s"
    )


def run(label: str, url: str | None, n: int, clients: int, workers: int) -> None:
    print(f"\n{label}: {n:,} records of {MEASUREMENTS} measurements, batches of {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        inst = make_instance(Path(tmp) / "a", url)
        try:
            print(line("in process (record_tests)", in_process(inst, n), n), flush=True)
        finally:
            inst.close()
    if url is not None:  # a second, empty database for the HTTPS run
        url = fresh_database(url)
    with tempfile.TemporaryDirectory() as tmp:
        inst = make_instance(Path(tmp) / "b", url)
        try:
            times = over_https(inst, n, clients, workers, Path(tmp))
            print(line(f"over HTTPS ({workers} server process(es), {clients} clients)", times["upload_s"], n))
            print(line("  ... until the analytics had folded it all", times["current_s"], n), flush=True)
        finally:
            inst.close()


def fresh_database(url: str) -> str:
    """An empty database beside the one in ``url`` (same server), for the second run."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    name = f"{u.database}_https"
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)


def main() -> None:
    tune_gc()  # the in-process figure as in a server process (``fabguard serve`` does the same)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="server processes on PostgreSQL (SQLite: 1)")
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database, for a second run")
    parser.add_argument("--no-sqlite", action="store_true", help="only the PostgreSQL run")
    args = parser.parse_args()
    if not args.no_sqlite:
        run("SQLite", None, args.records, args.clients, 1)
    if args.database_url:
        run("PostgreSQL", args.database_url, args.records, args.clients, args.workers)


if __name__ == "__main__":
    main()
