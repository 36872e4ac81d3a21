"""Unit search and genealogy (docs/dashboard.md, "Unit"): a serial or its start finds the unit; its
whole history comes as JSON (with the ledger entries' inclusion proofs) or as a PDF.

An operator's token finds and reads its own site's part only; a unit never seen there is not found."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from fabguard.api.deps import Inst, SiteReader
from fabguard.api.media import answers
from fabguard.api.responses.genealogy import Genealogy, UnitSearch
from fabguard.api.routes.dashboard import viewed_site
from fabguard.service.genealogy import unit_history, unit_pdf

router = APIRouter(tags=["units"])

Serial = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/api/v1/units/search", response_model=UnitSearch)
def search_units(
    inst: Inst,
    p: SiteReader,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=128,
            description="A serial or its first characters, a MAC address, a certificate's serial number or "
            "SHA-256 fingerprint, or a key's fingerprint (hex, any case, with or without ':', '-', '.' or spaces)",
        ),
    ],
) -> dict[str, Any]:
    """Serials a unit search finds (at most 50): first those whose MAC address, certificate (serial number or
    SHA-256, current or replaced by re-enrolment) or key fingerprint ``q`` is, then those that start with
    ``q``, tested or provisioned, in order. A unit back from the field is found by what it shows."""
    site = viewed_site(p, None)
    return {"query": q, "serials": unit_history.search(inst, q, site_id=site)}


@router.get("/api/v1/units/{serial}/genealogy", response_model=Genealogy, response_model_exclude_unset=True)
def unit_genealogy(inst: Inst, serial: Serial, p: SiteReader) -> dict[str, Any]:
    """Everything known about a serial: its units and certificates, test records with steps and
    measurements, provisioning decisions and refusals, firmware, field checks, licences, the fixture or
    site agent that made it, and each ledger entry naming it with its inclusion proof."""
    return unit_history.genealogy(inst, serial, site_id=viewed_site(p, None))


@router.get("/api/v1/units/{serial}/genealogy.pdf", **answers("The unit's genealogy as a PDF", "application/pdf"))
def unit_genealogy_pdf(inst: Inst, serial: Serial, p: SiteReader) -> Response:
    """The genealogy as a PDF for a customer complaint or an auditor (the JSON carries the proofs)."""
    g = unit_history.genealogy(inst, serial, site_id=viewed_site(p, None))
    data = unit_pdf.to_pdf(g, inst.config.organization)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in serial)
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{safe}-genealogy.pdf"'},
    )


__all__ = ["router"]
