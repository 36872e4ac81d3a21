"""The signed reconciliation report (JSON, CSV or PDF)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response

from fabguard.api.deps import Inst, Reader
from fabguard.api.media import JSON, answers
from fabguard.api.parsing import Timestamp
from fabguard.api.responses.ledger import SignedReport
from fabguard.service.ledger import reports

router = APIRouter(tags=["ledger"])


@router.get(
    "/api/v1/reports/reconciliation",
    **answers("The signed report", JSON, "text/csv", "application/pdf"),
    response_model=SignedReport,
)
def reconciliation_report(
    inst: Inst,
    _: Reader,
    order_id: str | None = None,
    site_id: str | None = None,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    format: Literal["json", "csv", "pdf"] = "json",
) -> Any:
    """Ordered vs tested vs provisioned vs refused vs revoked at the newest stored checkpoint; json, csv or pdf.

    Signs no checkpoint and writes nothing: 409 ``checkpoint_required`` before the first checkpoint, or when
    ``until`` is given and ledger entries after the newest checkpoint fall in the period (``POST
    /api/v1/ledger/checkpoint`` first). Without ``until`` the figures run to that checkpoint, which the report
    names. JSON embeds its signature; CSV and PDF carry theirs in ``X-FabGuard-Signature`` (Ed25519 by the
    ledger key, base64)."""
    rep = reports.reconciliation_report(inst, order_id=order_id, site_id=site_id, since=since, until=until)
    if format == "json":
        return rep.to_dict()
    if format == "csv":
        data, media = reports.to_csv(rep).encode(), "text/csv"
    else:
        data, media = reports.to_pdf(rep), "application/pdf"
    return Response(data, media_type=media, headers={"X-FabGuard-Signature": reports.sign_bytes(inst, data)})
