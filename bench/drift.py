"""Drift benchmark: false alarms and detection delays of the measurement-drift rules, on the real feed.

    .venv/bin/python bench/drift.py [--seeds 2] [--units 100000] [--measurements 20] [--trials 100]
        [--warmup 6000] [--horizon 3000] [--config NAME:limit=4.5,run=18,trend=9,refine=0 ...] [--only NAME ...]

Every configuration judges the same simulated lines through ``MeasurementDrift.feed`` (subgroups of 5,
a baseline of 20 subgroups, as the projector's default settings), one ``TestFact`` per passing unit
with ``--measurements`` Gaussian values, each measurement its own chart:

* in control: ``--seeds`` lines of ``--units`` units from the first unit on (baseline included). The
  false hits are reported per 100,000 units x 20 measurements (2,000,000 values, 400,000 judged means).
* detection: ``--trials`` charts (lines of ``--measurements`` charts each) run ``--warmup`` units in
  control, then the mean of every measurement steps by 0.5, 1, 1.5 or 2 sigma of an individual value, or
  starts a linear trend of 1 sigma per 100 or per 1000 units. Reported: the median and 90th percentile
  of the number of units from the change to the first hit on that measurement (the unit that completes
  the signalling subgroup included); ``>H`` when more than a tenth of the charts (or half, for the
  median) had no hit within ``--horizon`` units. A hit right after the change may be a false one: with
  the classic constants that is likely, and their short delays for small shifts are partly that.
* feed throughput: values fed per second of time spent in ``feed`` (building the records is not timed).

The defaults take about 45 s. Figures are for this machine only (throughput) and for these seeds
(rates): a rate of about one hit per 2,000,000 values needs ``--seeds 20`` or more to be known to
within some 25 % (hits of rule 2 come in clusters). ``--seeds 0`` or ``--trials 0`` skips a part.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fabguard.analytics import MeasuredValue, MeasurementDrift, TestFact  # noqa: E402
from fabguard.analytics.alerts import alert_id  # noqa: E402
from fabguard.analytics.drift import ChartKey, ChartState  # noqa: E402

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SITE = "cm-a"
CHUNK = 2_000  # units generated at a time
SCALE = 100_000 * 20  # values in 100k units x 20 measurements

# name -> MeasurementDrift keyword arguments (subgroup 5, baseline 20 unless given).
CONFIGS: dict[str, dict[str, float]] = {
    "classic": {"limit": 3.0, "run": 9, "trend": 6, "refine": 0},
    "classic, refined": {"limit": 3.0, "run": 9, "trend": 6},
    "4.5/18/9": {"limit": 4.5, "run": 18, "trend": 9},
    "5/20/10": {"limit": 5.0, "run": 20, "trend": 10},
    "5/21/10, fixed": {"limit": 5.0, "run": 21, "trend": 10, "refine": 0},
    "5/22/10": {"limit": 5.0, "run": 22, "trend": 10},
    "defaults": {},
}
SHIFTS = (0.5, 1.0, 1.5, 2.0)
TRENDS = (100, 1000)  # units per sigma


@dataclass(frozen=True)
class Measurement:
    phase: str
    name: str
    mean: float
    sigma: float


def measurements(count: int) -> list[Measurement]:
    return [Measurement(f"phase_{m // 5}", f"m_{m}", 1.0 + m, 0.01 * (m + 1)) for m in range(count)]


def drift_for(kwargs: dict[str, float]) -> MeasurementDrift:
    args = {"subgroup": 5, "baseline": 20, **kwargs}
    return MeasurementDrift(**args)  # type: ignore[arg-type]


def units(
    rng: random.Random, specs: list[Measurement], start: int, count: int, offset: Callable[[int], float] | None = None
) -> Iterator[list[TestFact]]:
    """Passing units ``start..start+count-1`` in chunks; ``offset(i)`` (in sigmas) is added to every
    measurement of the ``i``-th unit of this call."""
    gauss = rng.gauss
    for first in range(0, count, CHUNK):
        chunk = []
        for i in range(first, min(count, first + CHUNK)):
            shift = offset(i) if offset is not None else 0.0
            n = start + i
            values = tuple(
                MeasuredValue(s.phase, s.name, s.mean + s.sigma * (gauss(0.0, 1.0) + shift), None, None) for s in specs
            )
            chunk.append(TestFact(n, f"SN{n:08d}", "fx-1", "PASS", T0 + timedelta(seconds=n), values, n, SITE))
        yield chunk


def in_control(
    configs: dict[str, MeasurementDrift], seeds: range, count: int, specs: list[Measurement]
) -> dict[str, tuple[float, float, float]]:
    hits = dict.fromkeys(configs, 0)
    alarmed = dict.fromkeys(configs, 0)  # charts with at least one false hit
    spent = dict.fromkeys(configs, 0.0)
    for seed in seeds:
        charts: dict[str, dict[ChartKey, ChartState]] = {name: {} for name in configs}
        ids: dict[str, set[str]] = {name: set() for name in configs}
        for chunk in units(random.Random(seed), specs, 0, count):
            for name, drift in configs.items():
                feed, mine, found = drift.feed, charts[name], []
                t = time.perf_counter()
                for record in chunk:
                    found += feed(mine, record)
                spent[name] += time.perf_counter() - t
                hits[name] += len(found)
                ids[name].update(a.id for a in found)
        for name in configs:
            alarmed[name] += len(ids[name])
    values = len(seeds) * count * len(specs)
    if not values:
        return {name: (float("nan"), float("nan"), float("nan")) for name in configs}
    return {
        name: (hits[name] * SCALE / values, alarmed[name] / (len(seeds) * len(specs)), values / spent[name])
        for name in configs
    }


def delays(
    drift: MeasurementDrift, trials: int, warmup: int, horizon: int, specs: list[Measurement]
) -> dict[str, list[float]]:
    """Units from the change to the first hit, per scenario, one entry per chart (inf: none in ``horizon``)."""
    scenarios: dict[str, Callable[[int], float]] = {f"{s:g} sigma": (lambda i, s=s: s) for s in SHIFTS}
    scenarios |= {f"trend 1/{u}": (lambda i, u=u: (i + 1) / u) for u in TRENDS}
    out: dict[str, list[float]] = {name: [] for name in scenarios}
    ids = {alert_id(drift.kind, SITE, s.phase, s.name): s.name for s in specs}
    for line in range((trials + len(specs) - 1) // len(specs)):
        rng = random.Random(10_000 + line)
        charts: dict[ChartKey, ChartState] = {}
        for chunk in units(rng, specs, 0, warmup):
            for record in chunk:
                drift.feed(charts, record)
        saved = {key: chart.to_json() for key, chart in charts.items()}
        for name, offset in scenarios.items():
            charts = {key: ChartState.from_json(text) for key, text in saved.items()}
            first: dict[str, float] = {}
            for chunk in units(random.Random(20_000 + line), specs, warmup, horizon, offset):
                for record in chunk:
                    i = record.record_id - warmup
                    if first:  # charts with a hit are done: feed only the others
                        left = tuple(m for m in record.measurements if m.name not in first)
                        record = replace(record, measurements=left)
                    for hit in drift.feed(charts, record):
                        first.setdefault(ids[hit.id], i + 1)
                if len(first) == len(specs):
                    break
            out[name] += [first.get(s.name, float("inf")) for s in specs]
    return {name: sorted(v)[:trials] for name, v in out.items()}


def quantile(values: list[float], q: float, horizon: int) -> str:
    if not values:
        return "-"
    x = sorted(values)[min(len(values) - 1, int(q * len(values)))]
    return f">{horizon}" if x == float("inf") else f"{x:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2, help="in-control lines (default 2)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first in-control line (default 0)")
    parser.add_argument("--units", type=int, default=100_000, help="units per in-control line (default 100000)")
    parser.add_argument("--measurements", type=int, default=20, help="measurements per unit (default 20)")
    parser.add_argument("--trials", type=int, default=100, help="charts per detection scenario (default 100)")
    parser.add_argument("--warmup", type=int, default=6_000, help="in-control units before a change (default 6000)")
    parser.add_argument("--horizon", type=int, default=3_000, help="units watched after a change (default 3000)")
    parser.add_argument(
        "--config", action="append", default=[], help="add NAME:key=value,... (MeasurementDrift keyword arguments)"
    )
    parser.add_argument("--only", action="append", default=[], help="run only these configurations")
    args = parser.parse_args()

    configs = dict(CONFIGS)
    for spec in args.config:
        name, _, rest = spec.partition(":")
        configs[name] = {
            k: float(v) if "." in v else int(v) for k, v in (kv.split("=") for kv in rest.split(",") if kv)
        }
    if args.only:
        configs = {name: configs[name] for name in args.only}
    drifts = {name: drift_for(kwargs) for name, kwargs in configs.items()}
    specs = measurements(args.measurements)

    started = time.perf_counter()
    quiet = in_control(drifts, range(args.first_seed, args.first_seed + args.seeds), args.units, specs)
    caught = {name: delays(d, args.trials, args.warmup, args.horizon, specs) for name, d in drifts.items()}

    scenarios = list(next(iter(caught.values())))
    print(
        f"in control: {args.seeds} x {args.units} units x {args.measurements} measurements; "
        f"detection: {args.trials} charts, change after {args.warmup} units, watched {args.horizon}"
    )
    print("delays: units from the change to the first hit, median / 90th percentile")
    header = ["config", "L/run/trend/refine", "false hits", "charts hit", *scenarios, "values/s"]
    rows = []
    for name, d in drifts.items():
        rows.append(
            [
                name,
                f"{d.limit:g}/{d.run}/{d.trend}/{d.refine}",
                f"{quiet[name][0]:.3g}",
                f"{100 * quiet[name][1]:.1f} %",
                *(
                    f"{quantile(caught[name][s], 0.5, args.horizon)} / {quantile(caught[name][s], 0.9, args.horizon)}"
                    for s in scenarios
                ),
                f"{quiet[name][2] / 1e6:.2f}M",
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))
    print(
        "false hits: per 100,000 units x 20 measurements; charts hit: share of in-control charts with a false hit; "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
