"""``windows.measurement_sums``: the database adds up a measurement's hourly rows (each with sums about its
own reference value, from several fixtures, sites and orders) into one set of sums about one reference. The
capability drawn from them must be what the raw values give, even for a 2.4 GHz carrier measured to about
1 Hz (sums of raw squares would lose sigma entirely), and the limits those of the newest hour."""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from fabguard.analytics.spc import capability_from_sums
from fabguard.service.core.instance import Instance
from fabguard.store import windows
from fabguard.store.analytics_models import MeasurementHour

START = datetime(2026, 11, 30, tzinfo=UTC)
HOUR0 = int(START.timestamp() // 3600)
SPECS = {"carrier_hz": (2.402e9, 1.0), "spur_dbc": (-60.0, 0.5), "offset_hz": (1.0e7, 0.25)}


def _rows(rng: random.Random) -> tuple[list[MeasurementHour], dict[str, list[float]]]:
    """Hourly rows of 3 measurements at 2 sites x 2 fixtures over 30 hours, each about its first value."""
    rows, values = [], {name: [] for name in SPECS}
    for hour in range(30):
        for site, fixture in (("cm-a", "fx-1"), ("cm-a", "fx-2"), ("cm-b", "fx-3"), ("cm-b", "fx-4")):
            for name, (mean, sigma) in SPECS.items():
                vs = [rng.gauss(mean, sigma) for _ in range(rng.randint(1, 9))]
                values[name].extend(vs)
                ref = vs[0]
                rows.append(
                    MeasurementHour(
                        hour=HOUR0 + hour,
                        site_id=site,
                        order_id="",
                        fixture_id=fixture,
                        phase="radio",
                        name=name,
                        n=len(vs),
                        total=sum(v - ref for v in vs),
                        total_sq=sum((v - ref) ** 2 for v in vs),
                        low=min(vs),
                        high=max(vs),
                        mr_total=sum(abs(a - b) for a, b in itertools.pairwise(vs)),
                        mr_n=len(vs) - 1,
                        fails=0,
                        lower=mean - 50 * sigma + hour,  # the limits move: the newest hour's count
                        upper=mean + 50 * sigma + hour,
                        ref=ref,
                    )
                )
    return rows, values


def test_the_sums_of_many_rows_give_the_raw_values_capability_and_the_newest_limits(any_instance: Instance) -> None:
    rows, values = _rows(random.Random(7))
    with any_instance.db.transaction() as s:
        s.add_all(rows)
    scope = windows.Scope(START, START + timedelta(hours=30))
    with any_instance.db.read() as s:
        sums = windows.measurement_sums(s, scope)
        one_site = windows.measurement_sums(s, windows.Scope(START, START + timedelta(hours=30), site_id="cm-b"))
    assert [m.name for m in sums] == sorted(SPECS)
    for m in sums:
        c = capability_from_sums(**dataclasses.asdict(m))  # the sums are the function's arguments, name for name
        vs = values[m.name]
        mean, sigma = SPECS[m.name]
        assert c.n == len(vs)
        assert c.mean == pytest.approx(statistics.fmean(vs), rel=1e-12)
        assert c.sigma == pytest.approx(statistics.stdev(vs), rel=1e-6), m.name
        assert (m.lower, m.upper) == (mean - 50 * sigma + 29, mean + 50 * sigma + 29)
        assert m.mr_n == sum(r.mr_n for r in rows if r.name == m.name)
    assert sum(m.n for m in one_site) == sum(r.n for r in rows if r.site_id == "cm-b")
