"""Figures over a sample of stored test records (the newest ones of a scope), where rollups keep no
values: a measurement's distribution against its limits, capability over one order's own units, and
whether a record failed a given step.

A record here is its parsed phases and measurements (``domain.testrecord.stored_rows``), oldest first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fabguard.analytics.spc import Capability, capability
from fabguard.domain.testrecord import StoredMeasurement

Parsed = tuple[list[tuple[str, str]], list[StoredMeasurement]]
PASS = "PASS"
SKIP = "SKIP"


@dataclass(frozen=True)
class Histogram:
    """Counts of a measurement's values in equal bins, with its newest limits and what fell outside them."""

    phase: str
    name: str
    n: int
    lower: float | None
    upper: float | None
    edges: list[float]
    counts: list[int]
    below: int
    above: int
    mean: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "name": self.name,
            "n": self.n,
            "lower": self.lower,
            "upper": self.upper,
            "edges": self.edges,
            "counts": self.counts,
            "below_lower": self.below,
            "above_upper": self.above,
            "mean": self.mean,
        }


def values_of(records: Iterable[Parsed], phase: str, name: str) -> tuple[list[float], float | None, float | None]:
    """The measurement's finite values in record order and its newest limits."""
    values: list[float] = []
    lower = upper = None
    for _, measurements in records:
        for m_phase, m_name, _, v, lo, hi in measurements:
            if m_phase == phase and m_name == name and v is not None and math.isfinite(v):
                values.append(v)
                lower, upper = lo, hi
    return values, lower, upper


def histogram(
    phase: str, name: str, values: Sequence[float], lower: float | None, upper: float | None, bins: int = 30
) -> Histogram:
    """``values`` in ``bins`` equal bins over their range widened to take in the limits."""
    if not values:
        return Histogram(phase, name, 0, lower, upper, [], [], 0, 0, None)
    ends = [*values, *(x for x in (lower, upper) if x is not None and math.isfinite(x))]
    lo, hi = min(ends), max(ends)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    below = sum(1 for v in values if lower is not None and v < lower)
    above = sum(1 for v in values if upper is not None and v > upper)
    edges = [lo + i * width for i in range(bins + 1)]
    return Histogram(
        phase, name, len(values), lower, upper, edges, counts, below, above, math.fsum(values) / len(values)
    )


def capabilities(records: Sequence[Parsed]) -> list[Capability]:
    """Cp/Cpk and Pp/Ppk of every measurement over ``records`` (in order), limits the newest seen,
    sorted by phase and name."""
    found: dict[tuple[str, str], list[float]] = {}
    limits: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for _, measurements in records:
        for phase, name, _, v, lo, hi in measurements:
            if v is not None and math.isfinite(v):
                found.setdefault((phase, name), []).append(v)
                limits[(phase, name)] = (lo, hi)
    return [
        capability(values, lower=limits[key][0], upper=limits[key][1], phase=key[0], name=key[1])
        for key, values in sorted(found.items())
    ]


def failed_step(record: Parsed, phase: str, measurement: str | None) -> bool:
    """Whether a record failed the step the failure Pareto names: a measurement of ``phase`` that failed
    (``measurement``), or the phase itself (None: a phase that failed with no failing measurement)."""
    phases, measurements = record
    if measurement:
        return any(p == phase and n == measurement and o == "FAIL" for p, n, o, *_ in measurements)
    failed_measurement = any(p == phase and o == "FAIL" for p, _, o, *_ in measurements)
    return not failed_measurement and any(n == phase and o not in (PASS, SKIP) for n, o in phases)
