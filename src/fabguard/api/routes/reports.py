"""The signed reconciliation report (JSON, CSV or PDF)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response

from fabguard.api.deps import Inst, Reader
from fabguard.api.media import JSON, answers
from fabguard.domain.errors import InvalidRequest
from fabguard.service import reports

router = APIRouter(tags=["ledger"])


@router.get("/api/v1/reports/reconciliation", **answers("The signed report", JSON, "text/csv", "application/pdf"))
def reconciliation(
    inst: Inst,
    _: Reader,
    order_id: str | None = None,
    site_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    format: str = "json",
) -> Any:
    """Ordered vs tested vs provisioned vs refused vs revoked at a fresh checkpoint; json, csv or pdf.

    JSON embeds its signature; CSV and PDF carry theirs in ``X-FabGuard-Signature`` (Ed25519 by the
    ledger key, base64)."""
    rep = reports.reconciliation_report(inst, order_id=order_id, site_id=site_id, since=since, until=until)
    if format == "json":
        return rep.to_dict()
    if format == "csv":
        data, media = reports.to_csv(rep).encode(), "text/csv"
    elif format == "pdf":
        data, media = reports.to_pdf(rep), "application/pdf"
    else:
        raise InvalidRequest("format must be json, csv or pdf", code="invalid_format")
    return Response(data, media_type=media, headers={"X-FabGuard-Signature": reports.sign_bytes(inst, data)})
