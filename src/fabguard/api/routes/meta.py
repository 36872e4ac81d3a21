"""Health and the public CA certificates: no credentials needed.

``/livez`` says the process answers (restart it if not); ``/readyz`` says whether it can do its work now,
check by check (send it no traffic if not); ``/api/v1/health`` keeps its older meaning: the process
answers and its provisioning writer is alive. docs/operations.md says which a balancer or Kubernetes uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from fabguard import __version__
from fabguard.api.deps import Inst, Writer
from fabguard.domain.errors import FabGuardError
from fabguard.runtime.field_writer import FieldWriter
from fabguard.service.authority import authorities
from fabguard.service.operations import readiness

router = APIRouter(tags=["meta"])


class Liveness(BaseModel):
    status: Literal["alive"]
    version: str


class Check(BaseModel):
    """One part of readiness: ``ok``, or the code and message of what is wrong."""

    ok: bool
    code: str | None = Field(None, description="The error code when not ok, e.g. database_behind_code")
    message: str | None = Field(None, description="What is wrong and what to do, for a person")


class ReadinessChecks(BaseModel):
    database: Check = Field(description="Reachable, and its schema at the code's revision")
    keys: Check = Field(description="The key store signs with the issuing CA's key")
    provisioning_writer: Check = Field(description="This process's provisioning writer is alive")
    field_writer: Check = Field(description="This process's field-check writer is alive")


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    version: str
    checks: ReadinessChecks


@router.get("/livez", response_model=Liveness)
async def get_liveness() -> Liveness:
    """200 while the process answers (it touches no database: a database outage must not get the process
    restarted). For a liveness probe."""
    return Liveness(status="alive", version=__version__)


def _run(check: Callable[[], None]) -> Check:
    try:
        check()
    except FabGuardError as exc:
        return Check(ok=False, code=exc.code, message=exc.message)
    return Check(ok=True, code=None, message=None)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: the checks say which part and why"}},
)
def get_readiness(inst: Inst, writer: Writer, request: Request) -> JSONResponse:
    """200 when this process can serve: its database reachable and at the code's schema revision, its key
    store signing with the issuing CA's key, its provisioning and field-check writers alive; 503 otherwise,
    with every check's answer. For a readiness probe or a load balancer's health check."""
    field_writer: FieldWriter = request.app.state.field_writer
    checks = ReadinessChecks(
        database=_run(lambda: readiness.check_database(inst)),
        keys=_run(lambda: readiness.check_keys(inst)),
        provisioning_writer=_run(writer.check),
        field_writer=_run(field_writer.check),
    )
    ready = all(check.ok for check in (checks.database, checks.keys, checks.provisioning_writer, checks.field_writer))
    body = Readiness(status="ready" if ready else "not_ready", version=__version__, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/api/v1/health")
def get_health(writer: Writer) -> dict[str, str]:
    """200 while this process can serve; 503 `provisioning_writer_down` once its provisioning writer has
    died (it then provisions nothing: restart it). Kept for existing checks: `/livez` and `/readyz` say more."""
    writer.check()
    return {"status": "ok", "version": __version__}


@router.get("/api/v1/ca/certificates")
def ca_certificates(inst: Inst) -> dict[str, str]:
    """The public CA certificates (root, station CA and every issuing CA), PEM, by name."""
    return {c.name: inst.cas.certificate_pem(c.name) for c in authorities.list_cas(inst) if c.subject}
