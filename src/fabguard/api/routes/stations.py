"""The dashboard's station and line view: per-fixture and per-site figures, a measurement's
distribution against its limits, and the units that failed a step (docs/dashboard.md).

An operator's token reads its own site only (``dashboard.viewed_site``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from fabguard.api.deps import Inst, SiteReader
from fabguard.api.responses.stats import Distribution, FailingUnits, Stations
from fabguard.api.routes.dashboard import Since, SiteFilter, Until, viewed_site
from fabguard.domain.errors import InvalidRequest
from fabguard.service.analytics import stations

router = APIRouter(tags=["analytics"])

Phase = Annotated[str, Query(min_length=1, max_length=128, description="The test phase")]
Fixture = Annotated[str | None, Query(max_length=63, description="Only this fixture")]


def _calendar(exc: OverflowError) -> InvalidRequest:
    return InvalidRequest("the window reaches outside the dates a calendar can hold", code="invalid_window")


@router.get("/api/v1/stats/stations", response_model=Stations)
def stats_stations(
    inst: Inst, p: SiteReader, since: Since = None, until: Until = None, site: SiteFilter = None
) -> dict[str, Any]:
    """Per fixture (station) and per site (line): units provisioned, throughput, tests, first-pass and
    final yield, retest rate; and the failing steps and measurements ranked (Pareto)."""
    try:
        return stations.stations(inst, since=since, until=until, site_id=viewed_site(p, site))
    except OverflowError as exc:
        raise _calendar(exc) from None


@router.get("/api/v1/stats/distribution", response_model=Distribution)
def stats_distribution(
    inst: Inst,
    p: SiteReader,
    phase: Phase,
    name: Annotated[str, Query(min_length=1, max_length=128, description="The measurement")],
    since: Since = None,
    until: Until = None,
    site: SiteFilter = None,
    fixture: Fixture = None,
    bins: Annotated[int, Query(ge=5, le=100)] = 30,
) -> dict[str, Any]:
    """A measurement's histogram against its limits, with values below and above them, from the newest
    500 records of the window (``records_read`` says how many)."""
    try:
        return stations.distribution(
            inst,
            phase=phase,
            name=name,
            since=since,
            until=until,
            site_id=viewed_site(p, site),
            fixture_id=fixture,
            bins=bins,
        )
    except OverflowError as exc:
        raise _calendar(exc) from None


@router.get("/api/v1/stats/failing-units", response_model=FailingUnits)
def stats_failing_units(
    inst: Inst,
    p: SiteReader,
    phase: Phase,
    measurement: Annotated[
        str | None, Query(max_length=128, description="The failing measurement; none: the phase itself failed")
    ] = None,
    since: Since = None,
    until: Until = None,
    site: SiteFilter = None,
    fixture: Fixture = None,
) -> dict[str, Any]:
    """The units whose test records failed a step the Pareto names (newest first, at most 50, searched
    among the newest 1000 failed records of the window)."""
    try:
        return stations.failing_units(
            inst,
            phase=phase,
            measurement=measurement or None,
            since=since,
            until=until,
            site_id=viewed_site(p, site),
            fixture_id=fixture,
        )
    except OverflowError as exc:
        raise _calendar(exc) from None
