"""A fixture authenticates from its server process's memory, and a revocation or a re-enrolment reaches every
process before its next request (ADR 0017): real ``fabguard serve`` processes, real certificates, SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import event

from fabguard.domain.errors import Refusal
from fabguard.domain.values import FixtureId, SiteId
from fabguard.fixture.client import Credentials, enroll, tls_context
from fabguard.service.access import tokens
from fabguard.service.catalog import fixtures
from fabguard.service.core.instance import Instance
from fabguard.store.auth_generation import read_auth_generation
from tests.served import ServerProcess, fabguard_command
from tests.service.provisioning.test_quota_concurrency import (
    SITE,
    set_up_catalog,
)

WHOAMI = "/api/v1/fixture/whoami"


def _whoami(server: ServerProcess, creds: Credentials) -> tuple[int, Any]:
    with httpx.Client(base_url=server.url, verify=tls_context(creds), timeout=20) as http:
        response = http.get(WHOAMI)
    return response.status_code, response.json()


def _provision(server: ServerProcess, creds: Credentials) -> tuple[int, Any]:
    with httpx.Client(base_url=server.url, verify=tls_context(creds), timeout=20) as http:
        response = http.post("/api/v1/units/provision", json={"order_id": "po-x", "serial": "SN-1", "csr": "x"})
    return response.status_code, response.json()


def _enrolled(inst: Instance, server: ServerProcess, fixture_id: str, where: Path) -> Credentials:
    _, token = fixtures.create_fixture(inst, fixture_id=FixtureId(fixture_id), site_id=SiteId(SITE), actor="test")
    return enroll(server.url, token, where / fixture_id, ca_file=inst.cas.cert_path("root"))


def _statements_on_fixtures(inst: Instance) -> tuple[list[str], Callable[[], None]]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "fixtures" in statement:
            seen.append(statement)

    event.listen(inst.db.engine, "before_cursor_execute", note)
    return seen, lambda: event.remove(inst.db.engine, "before_cursor_execute", note)


def test_a_known_certificate_is_answered_from_memory_until_the_generation_moves(
    any_instance: Instance, tmp_path: Path, server_processes: Callable[[Path], ServerProcess]
) -> None:
    inst = any_instance
    set_up_catalog(inst)
    server = server_processes(inst.home)
    creds = _enrolled(inst, server, "fx-mem", tmp_path)
    der = x509.load_pem_x509_certificate(creds.cert.read_bytes()).public_bytes(Encoding.DER)
    first = fixtures.authenticate_fixture(inst, der, route="test")
    seen, stop = _statements_on_fixtures(inst)
    try:
        again = fixtures.authenticate_fixture(inst, der, route="test")
    finally:
        stop()
    assert again == first and seen == []  # no read of the fixtures table
    before = read_auth_generation(inst.db)
    fixtures.revoke_fixture(inst, FixtureId("fx-mem"), reason="stolen", actor="test")
    assert read_auth_generation(inst.db) == before + 1
    with pytest.raises(Refusal) as refused:
        fixtures.authenticate_fixture(inst, der, route="test")
    assert refused.value.code == "fixture_revoked"


def test_a_revocation_through_the_cli_refuses_the_next_request_of_a_running_server(
    any_instance: Instance, tmp_path: Path, server_processes: Callable[[Path], ServerProcess]
) -> None:
    inst = any_instance
    set_up_catalog(inst)
    server = server_processes(inst.home)
    creds = _enrolled(inst, server, "fx-cli", tmp_path)
    assert [_whoami(server, creds)[0] for _ in range(3)] == [200, 200, 200]  # remembered from the first
    subprocess.run(
        [*fabguard_command(), "--home", str(inst.home), "fixture", "revoke", "fx-cli", "--reason", "stolen"],
        check=True,
        capture_output=True,
        env=dict(os.environ),
        timeout=120,
    )
    status, body = _whoami(server, creds)
    assert (status, body["error"]["code"]) == (403, "fixture_revoked")


@pytest.mark.postgres
def test_a_revocation_in_one_server_process_refuses_the_next_request_in_every_other(
    any_instance: Instance, tmp_path: Path, server_processes: Callable[[Path], ServerProcess]
) -> None:
    inst = any_instance
    if inst.db.is_sqlite:
        pytest.skip("several server processes need PostgreSQL")
    set_up_catalog(inst)
    first, second, third = server_processes(inst.home), server_processes(inst.home), server_processes(inst.home)
    creds = _enrolled(inst, first, "fx-pg", tmp_path)
    other = _enrolled(inst, first, "fx-pg-other", tmp_path)
    for server in (first, second, third):  # each process remembers both
        assert _whoami(server, creds) == (200, {"fixture_id": "fx-pg", "site_id": SITE})
        assert _whoami(server, other)[0] == 200
    _, admin = tokens.create_token(inst, name="admin", role="admin", actor="test")
    with httpx.Client(
        base_url=second.url, verify=ssl.create_default_context(cafile=str(inst.cas.cert_path("root"))), timeout=20
    ) as http:
        revoked = http.post(
            "/api/v1/fixtures/fx-pg/revoke", json={"reason": "stolen"}, headers={"Authorization": f"Bearer {admin}"}
        )
    assert revoked.status_code == 200, revoked.text
    for server in (first, second, third):
        status, body = _whoami(server, creds)
        assert (status, body["error"]["code"]) == (403, "fixture_revoked")
        assert _whoami(server, other)[0] == 200  # the others are read again, and still pass
        # The provisioning call too, served by its lean route (api.hot_routes, ADR 0021), not FastAPI's.
        status, body = _provision(server, creds)
        assert (status, body["error"]["code"]) == (403, "fixture_revoked")


def test_a_re_enrolled_fixture_s_old_certificate_is_refused_in_a_server_that_remembered_it(
    any_instance: Instance, tmp_path: Path, server_processes: Callable[[Path], ServerProcess]
) -> None:
    inst = any_instance
    set_up_catalog(inst)
    server = server_processes(inst.home)
    old = _enrolled(inst, server, "fx-re", tmp_path / "old")
    assert _whoami(server, old)[0] == 200
    token = fixtures.new_enrollment_token(inst, FixtureId("fx-re"), actor="test")
    new = enroll(server.url, token, tmp_path / "new" / "fx-re", ca_file=inst.cas.cert_path("root"))
    assert _whoami(server, new)[0] == 200
    status, body = _whoami(server, old)
    assert (status, body["error"]["code"]) == (401, "unknown_fixture")
