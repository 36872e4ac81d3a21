"""The fixture station's calls (TLS client certificate): whoami, test records, provisioning."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from fabguard.api import parsing
from fabguard.api.deps import Fixture, Inst
from fabguard.api.schemas import ProvisionBatchIn, ProvisionIn, TestRecordsIn
from fabguard.service import provisioning, testrecords

router = APIRouter(tags=["fixture"])


@router.get("/api/v1/fixture/whoami")
def whoami(f: Fixture) -> dict[str, str]:
    return {"fixture_id": f.id, "site_id": f.site_id}


@router.post("/api/v1/test-records", status_code=201)
def upload_test_record(inst: Inst, record: Annotated[dict[str, Any], Body()], f: Fixture) -> dict[str, object]:
    """One OpenHTF JSON test record (as written by OpenHTF's OutputToJSON)."""
    return testrecords.record_test(inst, f, record).to_dict()


@router.post("/api/v1/test-records/batch")
def upload_test_records(inst: Inst, body: TestRecordsIn, f: Fixture) -> dict[str, Any]:
    """Up to ``max_batch_records`` (200) records: each is checked on its own and answered in order
    (``stored`` with its id, or ``refused`` with the error); the stored ones and the refusals are
    written in one transaction, so a request that failed with an error status stored none of them."""
    return {"results": testrecords.record_tests(inst, f, body.records)}


@router.post("/api/v1/units/provision")
def provision(inst: Inst, body: ProvisionIn, f: Fixture, response: Response) -> dict[str, object]:
    """Check and, if allowed, issue one unit's device certificate (201; 200 for an idempotent retry)."""
    unit = parsing.unit_request(body.order_id, body.serial, body.csr, max_csr_bytes=inst.limits.max_csr_bytes)
    done = provisioning.provision_unit(inst, f, unit)
    response.status_code = 200 if done.replayed else 201
    return done.to_dict()


@router.post("/api/v1/units/provision-batch")
def provision_batch(inst: Inst, body: ProvisionBatchIn, f: Fixture) -> dict[str, Any]:
    """Many units in one request; each is decided on its own and has its own status."""
    units = [
        parsing.batch_unit_request(body.order_id, u.serial, u.csr, max_csr_bytes=inst.limits.max_csr_bytes)
        for u in body.units
    ]
    return {"results": provisioning.provision_batch(inst, f, units)}
