"""Health that means something: ``/livez`` answers while the process does (no database), ``/readyz`` answers
200 only when the database is reachable and at the code's schema, the key store signs and the provisioning
writer is alive, and 503 naming each check otherwise; ``/api/v1/health`` keeps its meaning. Both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from fabguard.api.app import create_app
from fabguard.runtime.field_writer import FieldWriter
from fabguard.runtime.group_commit import GroupCommitter, Job, Outcome
from fabguard.service.core.instance import Instance
from fabguard.service.field.checks import Job as FieldJob
from fabguard.service.field.checks import Outcome as FieldOutcome
from fabguard.store.migrate import code_revision
from tests.runtime.test_field_writer import WriterKilled as FieldWriterKilled
from tests.runtime.test_field_writer import refused
from tests.runtime.test_group_commit_writer import WriterKilled, job


def get(app: Any, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://test") as http:
            return await http.get(path)

    return asyncio.run(go())


def committer_of(app: Any) -> GroupCommitter:
    inner = app
    while not hasattr(inner, "state"):  # RequestLog(BodyLimit(FastAPI))
        inner = inner.app
    committer: GroupCommitter = inner.state.committer
    return committer


def _set_revision(inst: Instance, revision: str) -> None:
    with inst.db.transaction() as s:
        s.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_a_ready_instance_answers_every_check_ok(any_instance: Instance) -> None:
    app = create_app(any_instance)
    live, ready, health = get(app, "/livez"), get(app, "/readyz"), get(app, "/api/v1/health")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    assert ready.status_code == 200, ready.text
    ok = {"ok": True, "code": None, "message": None}
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"] == {"database": ok, "keys": ok, "provisioning_writer": ok, "field_writer": ok}
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_a_database_behind_the_code_is_not_ready_but_the_process_is_alive(any_instance: Instance) -> None:
    app = create_app(any_instance)
    _set_revision(any_instance, "0016")
    try:
        live, ready = get(app, "/livez"), get(app, "/readyz")
    finally:
        _set_revision(any_instance, code_revision())
    assert live.status_code == 200
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    database = ready.json()["checks"]["database"]
    assert database["ok"] is False and database["code"] == "database_behind_code"
    assert "fabguard db upgrade" in database["message"]
    assert ready.json()["checks"]["keys"]["ok"] and ready.json()["checks"]["provisioning_writer"]["ok"]
    assert get(app, "/readyz").status_code == 200  # upgraded again: ready again


def test_an_unreachable_database_is_not_ready(any_instance: Instance, tmp_path: Path) -> None:
    nowhere = (
        f"sqlite:///{tmp_path}/no-such-directory/fabguard.db"
        if any_instance.db.is_sqlite
        else "postgresql+psycopg://fabguard@127.0.0.1:1/fabguard?connect_timeout=2"  # nothing listens there
    )
    away = Instance(any_instance.home, any_instance.config, database_url=nowhere)
    try:
        app = create_app(away)
        live, ready = get(app, "/livez"), get(app, "/readyz")
    finally:
        away.close()
    assert live.status_code == 200
    assert ready.status_code == 503, ready.text
    database = ready.json()["checks"]["database"]
    assert database["ok"] is False and database["code"] == "database_unavailable", database


def test_a_key_store_that_does_not_open_is_not_ready(any_instance: Instance) -> None:
    wrong = Instance.open(any_instance.home, env={"FABGUARD_KEY_PASSPHRASE": "not-the-passphrase"})
    try:
        ready = get(create_app(wrong), "/readyz")
    finally:
        wrong.close()
    assert ready.status_code == 503
    keys = ready.json()["checks"]["keys"]
    assert keys["ok"] is False and keys["code"] == "key_store_unavailable" and "issuing" in keys["message"]
    assert ready.json()["checks"]["database"]["ok"] is True


def test_a_dead_provisioning_writer_is_not_ready(instance: Instance) -> None:
    app = create_app(instance)
    committer = committer_of(app)

    def dying(jobs: Sequence[Job]) -> list[Outcome]:
        raise WriterKilled

    committer.decide = dying
    committer.start()
    try:
        committer.run([job()])
    finally:
        committer.stop()
    ready, health = get(app, "/readyz"), get(app, "/api/v1/health")
    assert ready.status_code == 503
    writer = ready.json()["checks"]["provisioning_writer"]
    assert writer["ok"] is False and writer["code"] == "provisioning_writer_down"
    assert health.status_code == 503 and health.json()["error"]["code"] == "provisioning_writer_down"
    assert get(app, "/livez").status_code == 200


def test_a_dead_field_writer_is_not_ready(instance: Instance) -> None:
    app = create_app(instance)
    inner = app
    while not hasattr(inner, "state"):
        inner = inner.app
    writer: FieldWriter = inner.state.field_writer

    def dying(jobs: Sequence[FieldJob]) -> list[FieldOutcome]:
        raise FieldWriterKilled

    writer.decide = dying
    writer.start()
    try:
        [outcome] = writer.run([refused(1)])
    finally:
        writer.stop()
    assert getattr(outcome, "code", None) == "field_writer_down"
    ready = get(app, "/readyz")
    assert ready.status_code == 503, ready.text
    checks = ready.json()["checks"]
    assert checks["field_writer"]["ok"] is False and checks["field_writer"]["code"] == "field_writer_down"
    assert checks["provisioning_writer"]["ok"] is True  # provisioning goes on; a balancer still sends no traffic
    assert get(app, "/livez").status_code == 200
