"""Statistical process control per measurement: mean, sigma, Cp/Cpk (within) and Pp/Ppk (overall)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fabguard.analytics.facts import TestFact

# d2 for moving ranges of two consecutive values: sigma_within = mean moving range / d2.
_D2 = 1.128


@dataclass(frozen=True, slots=True)
class Capability:
    phase: str
    name: str
    n: int
    mean: float | None
    sigma: float | None
    sigma_within: float | None
    lower: float | None
    upper: float | None
    cpk: float | None
    ppk: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "name": self.name,
            "n": self.n,
            "mean": self.mean,
            "sigma": self.sigma,
            "sigma_within": self.sigma_within,
            "lower": self.lower,
            "upper": self.upper,
            "cpk": self.cpk,
            "ppk": self.ppk,
        }


def _figure(compute: Callable[[], float | None]) -> float | None:
    """A figure, or None where the float cannot hold it (values near its range overflow a sum or a square:
    a station may report 1e300) or it is not a number: every figure given is finite, as JSON needs."""
    try:
        value = compute()
    except (OverflowError, ValueError, ZeroDivisionError):
        return None
    return value if value is not None and math.isfinite(value) else None


def _index(mean: float | None, sigma: float | None, lower: float | None, upper: float | None) -> float | None:
    """min((USL-mean), (mean-LSL)) / 3 sigma over the limits that exist; None without limits or spread."""
    if mean is None or sigma is None or sigma <= 0 or (lower is None and upper is None):
        return None
    sides = [upper - mean] if upper is not None else []
    if lower is not None:
        sides.append(mean - lower)
    return _figure(lambda: min(sides) / (3 * sigma))


def capability(
    values: Sequence[float], *, lower: float | None, upper: float | None, phase: str = "", name: str = ""
) -> Capability:
    """Capability of values in production order: Ppk from the overall sample sigma, Cpk from the moving range."""
    n = len(values)
    if n == 0:
        return Capability(phase, name, 0, None, None, None, lower, upper, None, None)
    mean = _figure(lambda: math.fsum(values) / n)
    if mean is None or n == 1:
        return _indices(phase, name, n, mean, None, None, lower, upper)
    center = mean
    sigma = _figure(lambda: math.sqrt(math.fsum((v - center) * (v - center) for v in values) / (n - 1)))
    within = _figure(lambda: math.fsum(abs(b - a) for a, b in itertools.pairwise(values)) / (n - 1) / _D2)
    return _indices(phase, name, n, mean, sigma, within, lower, upper)


def _indices(
    phase: str,
    name: str,
    n: int,
    mean: float | None,
    sigma: float | None,
    within: float | None,
    lower: float | None,
    upper: float | None,
) -> Capability:
    """Cpk from the within sigma, Ppk from the overall sigma."""
    return Capability(
        phase,
        name,
        n,
        mean,
        sigma,
        within,
        lower,
        upper,
        _index(mean, within, lower, upper),
        _index(mean, sigma, lower, upper),
    )


def measurement_capability(records: Iterable[TestFact]) -> list[Capability]:
    """Capability of every numeric measurement across records (oldest first); limits from the newest record."""
    values: dict[tuple[str, str], list[float]] = {}
    limits: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for record in records:
        for m in record.measurements:
            if m.value is None:
                continue
            key = (m.phase, m.name)
            values.setdefault(key, []).append(m.value)
            limits[key] = (m.lower, m.upper)
    return [
        capability(vs, lower=limits[key][0], upper=limits[key][1], phase=key[0], name=key[1])
        for key, vs in sorted(values.items())
    ]


def capability_from_sums(
    *,
    phase: str,
    name: str,
    n: int,
    total: float,
    total_sq: float,
    mr_total: float,
    mr_n: int,
    lower: float | None,
    upper: float | None,
    ref: float = 0.0,
) -> Capability:
    """Capability from running sums (count, sum, sum of squares, moving ranges), as rollups keep them.

    The same figures as ``capability`` over the values, up to rounding: the overall sigma from the sums
    (Ppk), the within sigma from the mean moving range (Cpk). ``total`` and ``total_sq`` may be sums of
    ``value - ref`` (any ``ref`` near the values): then a mean far from zero costs no precision.
    """
    if n == 0:
        return Capability(phase, name, 0, None, None, None, lower, upper, None, None)
    mean = _figure(lambda: ref + total / n)
    sigma = _figure(lambda: math.sqrt(max(total_sq - total * total / n, 0.0) / (n - 1))) if n > 1 else None
    within = _figure(lambda: mr_total / mr_n / _D2) if mr_n > 0 else None
    return _indices(phase, name, n, mean, sigma, within, lower, upper)
