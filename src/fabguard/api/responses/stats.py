"""Answers of the dashboard's figures (``service/analytics``): the overview, production over a window, one
order, the station and line view, a measurement's distribution and a failing step's units (docs/dashboard.md).

``yield`` is a Python keyword: the models name the field ``yield_`` and answer it as ``yield``.
"""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out
from fabguard.api.responses.analytics import Alert
from fabguard.api.responses.catalog import Fixture
from fabguard.api.responses.field import FieldCheck
from fabguard.api.responses.leases import Lease
from fabguard.api.responses.orders import Order

RefusalCounts = dict[str, dict[str, int]]
REFUSALS = "Refusals by event kind (unit.refused, test.refused, request.refused), then by error code"


class Window(Out):
    since: str
    until: str


class SizedWindow(Window):
    hours: float = Field(description="The window's length")


class YieldFigures(Out):
    """The yield of the units first tested in the scope (docs/figures.md: one definition for every surface)."""

    units_tested: int
    tests: int
    first_pass: int = Field(description="Units whose first test passed")
    final_pass: int = Field(description="Units whose latest test passed")
    retested: int = Field(description="Units tested more than once")
    first_pass_yield: float | None = Field(description="first_pass / units_tested; null without units")
    final_yield: float | None
    retest_rate: float | None
    scrapped: int = Field(description="Units whose latest test did not pass")
    scrap_rate: float | None


class SeriesBucket(Out):
    start: str = Field(description="The bucket's start; it lasts the answer's bucket width")
    provisioned: int
    tests_passed: int
    tests_failed: int
    pass_rate: float | None = Field(description="null when the bucket holds no test")


class ParetoRow(Out):
    """A step that failed: a measurement of a phase, or the phase itself (``measurement`` null)."""

    phase: str
    measurement: str | None
    failures: int
    share: float = Field(description="Of all failures in the scope")
    cumulative_share: float


class Capability(Out):
    """Process capability of one measurement: Cpk from the moving range (within), Ppk from the overall sigma."""

    phase: str
    name: str
    n: int
    mean: float | None
    sigma: float | None
    sigma_within: float | None
    lower: float | None = Field(description="The newest lower limit seen")
    upper: float | None = Field(description="The newest upper limit seen")
    cpk: float | None
    ppk: float | None


class BurnDown(Out):
    quota: int
    used: int
    remaining: int
    rate_per_hour: float = Field(description="Units provisioned per hour over the burn-down window")
    projected_exhaustion: str | None = Field(description="When the quota runs out at that rate; null when idle")


class OrderBurning(Order):
    burn_down: BurnDown


class FixtureActive(Fixture):
    last_activity: str | None = Field(description="When it last appeared in an event (else its enrolment)")


class OverviewTotals(Out):
    orders: int
    active_orders: int
    provisioned: int
    refused: int
    open_alerts: int


class Overview(Out):
    """Everything the dashboard shows at once (also the live stream's ``overview`` event)."""

    as_of: str
    sequence: int = Field(description="The newest event's sequence")
    lag: int = Field(description="Events the figures do not cover yet (0: all)")
    site_id: str | None = Field(description="The one site shown (an operator's view); null: every site")
    window: Window
    totals: OverviewTotals
    yield_: YieldFigures = Field(alias="yield")
    orders: list[OrderBurning]
    fixtures: list[FixtureActive]
    refusals: RefusalCounts = Field(description=REFUSALS)
    series: list[SeriesBucket]
    bucket_seconds: int = Field(description="The series' bucket width")
    alerts: list[Alert]
    field_checks: list[FieldCheck] = Field(description="The latest field checks (none in a site's view)")


class ProductionScope(Out):
    product_id: str | None
    order_id: str | None
    site_id: str | None
    fixture_id: str | None


class TestCounts(Out):
    __test__ = False
    total: int
    by_outcome: dict[str, int] = Field(description="PASS, FAIL, ERROR, TIMEOUT, ABORTED")
    per_hour: float


class Production(Out):
    window: SizedWindow
    scope: ProductionScope
    provisioned: int
    throughput_per_hour: float
    tests: TestCounts
    yield_: YieldFigures = Field(alias="yield")
    refusals: RefusalCounts = Field(description=REFUSALS)
    failures: list[ParetoRow] = Field(description="The failure Pareto, most failures first")
    capability: list[Capability]
    sequence: int
    lag: int


class CapabilitySample(Out):
    """What the order's capability was drawn from: its newest units' latest records, at most ``limit`` units."""

    units_read: int
    records_read: int
    limit: int
    sampled: bool = Field(description="True when the order has more units than were read")


class OrderFigures(Out):
    order: Order
    burn_down: BurnDown
    yield_: YieldFigures = Field(alias="yield")
    refused: dict[str, int] = Field(description="Refused requests by error code")
    series: list[SeriesBucket]
    capability: list[Capability] = Field(description="Over the order's own units (each one's latest test)")
    capability_basis: str = Field(description="units: what the capability is drawn from")
    capability_sample: CapabilitySample
    failures: list[ParetoRow] = Field(description="The failure Pareto at the order's site")
    leases: list[Lease] = Field(
        description="The order's quota leases to offline site agents, oldest first: the units each holds of the "
        "order's used units, the units its synced log made and, once closed, what went back (ADR 0022)"
    )
    as_of: str
    sequence: int
    lag: int


class StationFigures(Out):
    """One fixture (a station) or one site (a line: ``fixture_id`` null) over the window."""

    site_id: str
    fixture_id: str | None
    provisioned: int
    throughput_per_hour: float
    tests: int
    yield_: YieldFigures = Field(alias="yield")


class Stations(Out):
    window: SizedWindow
    site_id: str | None
    fixtures: list[StationFigures]
    lines: list[StationFigures]
    failures: list[ParetoRow]


class Distribution(Out):
    """A measurement's histogram: ``counts[i]`` values fell in ``[edges[i], edges[i+1])``."""

    phase: str
    name: str
    n: int = Field(description="Values found")
    lower: float | None
    upper: float | None
    edges: list[float]
    counts: list[int]
    below_lower: int
    above_upper: int
    mean: float | None
    records_read: int = Field(description="The newest records of the window the sample holds")
    sample_limit: int
    sampled: bool = Field(description="True when the window holds more records than the sample")
    capability: Capability | None


class FailingUnit(Out):
    serial: str
    record_id: int
    fixture_id: str
    site_id: str
    outcome: str
    received_at: str


class FailingUnits(Out):
    phase: str
    measurement: str | None
    units: list[FailingUnit] = Field(description="Newest first")
    records_read: int = Field(description="The newest failed records of the window searched")
    scan_limit: int
    sampled: bool = Field(description="True when the window holds more failed records than were searched")
