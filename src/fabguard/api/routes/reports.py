"""The signed reconciliation report (JSON, CSV or PDF)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from fabguard.api.archives import ARCHIVE_MEDIA, directory_archive
from fabguard.api.deps import Engineer, Inst, Reader
from fabguard.api.media import JSON, answers
from fabguard.api.parsing import Timestamp
from fabguard.api.responses.ledger import SignedReport
from fabguard.service.compliance import evidence_pack
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


@router.post(
    "/api/v1/compliance/pack",
    tags=["compliance"],
    **answers("The pack as a gzip-compressed tar archive", ARCHIVE_MEDIA),
)
def compliance_pack(inst: Inst, _: Engineer, allow_incomplete: bool = False) -> FileResponse:
    """The CRA evidence pack ``fabguard compliance export DIR`` writes (signed and bound to a checkpoint taken
    now), as one ``.tar.gz``; ``X-FabGuard-Summary`` (JSON) counts what it holds. A product without its CRA
    facts is refused (409 ``product_compliance_incomplete``) unless ``allow_incomplete``, which the pack's
    signed index records."""

    def fill(out: Path) -> dict[str, str]:
        pack = evidence_pack.export_pack(inst, out, allow_incomplete=allow_incomplete)
        summary = {k: v for k, v in vars(pack).items() if k != "directory"}
        return {"X-FabGuard-Summary": json.dumps(summary, separators=(",", ":"))}

    return directory_archive(fill, "compliance-pack.tar.gz")
