"""Test records in OpenHTF's JSON output shape (what ``OutputToJSON`` writes), for simulated stations."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MeasurementSpec:
    phase: str
    name: str
    nominal: float
    sigma: float
    lower: float
    upper: float
    units: str


# A small board bring-up procedure: power rails, current draw, radio, clock.
DEFAULT_PROCEDURE: tuple[MeasurementSpec, ...] = (
    MeasurementSpec("power_rails", "vcc_3v3", 3.30, 0.02, 3.20, 3.40, "V"),
    MeasurementSpec("power_rails", "vcc_1v8", 1.80, 0.012, 1.75, 1.85, "V"),
    MeasurementSpec("current", "idle_current_ma", 12.0, 0.8, 8.0, 16.0, "mA"),
    MeasurementSpec("radio", "tx_power_dbm", 8.0, 0.35, 6.5, 9.5, "dBm"),
    MeasurementSpec("clock", "xtal_ppm", 0.0, 3.5, -20.0, 20.0, "ppm"),
)


def openhtf_record(
    serial: str,
    station_id: str,
    *,
    fail: bool,
    rng: random.Random,
    procedure: tuple[MeasurementSpec, ...] = DEFAULT_PROCEDURE,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """One unit's test run. With ``fail`` one measurement lands outside its limits."""
    start = now_ms if now_ms is not None else int(time.time() * 1000)
    failing = rng.randrange(len(procedure)) if fail else -1
    phases: dict[str, dict[str, Any]] = {}
    t = start
    for i, spec in enumerate(procedure):
        value = rng.gauss(spec.nominal, spec.sigma)
        value = min(max(value, spec.lower + spec.sigma * 0.01), spec.upper - spec.sigma * 0.01)
        if i == failing:
            value = spec.upper + abs(rng.gauss(spec.sigma * 2, spec.sigma))
        ok = spec.lower <= value <= spec.upper
        phase = phases.setdefault(
            spec.phase,
            {
                "name": spec.phase,
                "codeinfo": {},
                "start_time_millis": t,
                "end_time_millis": t,
                "attachments": {},
                "result": {"phase_result": "CONTINUE"},
                "outcome": "PASS",
                "measurements": {},
            },
        )
        phase["measurements"][spec.name] = {
            "name": spec.name,
            "outcome": "PASS" if ok else "FAIL",
            "measured_value": round(value, 6),
            "validators": [f"{spec.lower} <= x <= {spec.upper}"],
            "units": {"name": spec.units, "suffix": spec.units},
            "dimensions": None,
        }
        if not ok:
            phase["outcome"] = "FAIL"
        t += rng.randint(50, 400)
        phase["end_time_millis"] = t
    outcome = "FAIL" if fail else "PASS"
    return {
        "dut_id": serial,
        "station_id": station_id,
        "start_time_millis": start,
        "end_time_millis": t,
        "outcome": outcome,
        "outcome_details": [],
        "metadata": {"test_name": "board_bringup", "config": {}},
        "phases": list(phases.values()),
        "log_records": [],
        "code_info": {},
        "diagnoses": [],
        "marginal": False,
    }
