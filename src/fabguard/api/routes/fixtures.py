"""Fixtures (admin: register, list, revoke, new token) and their one-time enrolment (fixture side)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fabguard.api.deps import Admin, Inst, Reader
from fabguard.api.responses.catalog import Enrollment, EnrollmentToken, Fixture, NewFixture
from fabguard.api.schemas import EnrollIn, FixtureIn, RevokeIn
from fabguard.domain.values import FixtureId, SiteId
from fabguard.service.catalog import fixtures

router = APIRouter()


@router.post("/api/v1/fixtures", status_code=201, tags=["fixtures"], response_model=NewFixture)
def create_fixture(inst: Inst, body: FixtureIn, p: Admin) -> dict[str, Any]:
    made, token = fixtures.create_fixture(
        inst, fixture_id=FixtureId(body.id), site_id=SiteId.named(body.site_id), actor=p.actor
    )
    return {**fixtures.fixture_dict(made), "enrollment_token": token}


@router.get("/api/v1/fixtures", tags=["fixtures"], response_model=list[Fixture])
def list_fixtures(inst: Inst, _: Reader) -> list[dict[str, object]]:
    return [fixtures.fixture_dict(f) for f in fixtures.list_fixtures(inst)]


@router.post("/api/v1/fixtures/{fixture_id}/revoke", tags=["fixtures"], response_model=Fixture)
def revoke_fixture(inst: Inst, fixture_id: str, body: RevokeIn, p: Admin) -> dict[str, object]:
    revoked = fixtures.revoke_fixture(inst, FixtureId.named(fixture_id), reason=body.reason, actor=p.actor)
    return fixtures.fixture_dict(revoked)


@router.post(
    "/api/v1/fixtures/{fixture_id}/enrollment-token", status_code=201, tags=["fixtures"], response_model=EnrollmentToken
)
def new_enrollment_token(inst: Inst, fixture_id: str, p: Admin) -> dict[str, str]:
    token = fixtures.new_enrollment_token(inst, FixtureId.named(fixture_id), actor=p.actor)
    return {"fixture_id": fixture_id, "enrollment_token": token}


@router.post("/api/v1/enroll", status_code=201, tags=["fixture"], response_model=Enrollment)
def enroll_fixture(inst: Inst, body: EnrollIn) -> dict[str, object]:
    """Exchange a one-time enrolment token and a CSR for the fixture's station certificate."""
    return fixtures.enroll_fixture(inst, token=body.token, csr_data=body.csr.encode()).to_dict()
