"""A whole production line as real code: fixtures in parallel, devices with their own keys, test
stations that sometimes fail, retests, and the attacks FabGuard exists to stop. It drives the real
server through the real client SDK over HTTPS.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from fabguard_station.client import Credentials, FabGuardClientError, FixtureClient
from fabguard_station.device import SimulatedDevice
from fabguard_station.openhtf_records import DEFAULT_PROCEDURE, MeasurementSpec, openhtf_record

T = TypeVar("T")


@dataclass(frozen=True)
class LineConfig:
    """What the line does. ``units`` genuine boards are built; anything past the quota is overproduction.

    Each board is tested (a share ``fail_rate`` of runs fail; a share ``retest_rate`` of failed boards
    is repaired and retested, the rest scrapped) and passing boards are provisioned, ``batch_size`` to a
    request. With ``panel`` above 1 a fixture tests that many boards together (a panel on one bed of
    nails), uploads the panel's records (retests included, in the order they were made) in one batch
    request, then provisions the boards that passed; each board draws the random numbers it would draw
    alone, so the figures do not depend on ``panel``. The attacks, each off by default, every one the
    work of a detector:

    * ``units`` past the order's quota: overproduction, refused ``quota_exhausted``.
    * ``clones``: boards with the extracted key of a provisioned board on a new serial (``key_reused``).
    * ``duplicate_serials``: boards that carry the serial of a provisioned board but their own fresh
      key, tested and sent for a certificate (``serial_has_other_key``).
    * ``skip_tests``: boards sent for a certificate without a test record (``test_missing``).
    * ``wrong_site_attempts``: boards tested and provisioned by a fixture of another site (``wrong_site``);
      needs the line's ``wrong_site`` credentials.
    * ``untrusted_attempts``: boards a station the server no longer trusts (revoked, or holding a
      certificate superseded by a re-enrolment) tries to provision; needs ``untrusted`` credentials.
      Refused at authentication (``fixture_revoked`` or ``unknown_fixture``).
    * ``copied_records``: boards whose test record is a passing genuine board's record with the serial
      changed (the measurements copied, not measured); they pass the test gate and are provisioned.
    * ``drift_after``: genuine boards numbered above it (and burst boards) measure ``drift_measurement``
      shifted by ``drift_sigma`` times its spread: a process drifting while every board still passes.
    * ``burst``: extra boards, tested and within the quota, provisioned back to back once the line is
      done: a spell faster than the line's rated rate (what an unannounced extra shift looks like).

    Clones, duplicate serials and copied records come from boards the line already built, so they run
    after it. Everything random follows from ``seed``.
    """

    order_id: str
    units: int
    fail_rate: float = 0.05
    retest_rate: float = 0.8
    clones: int = 0
    skip_tests: int = 0
    wrong_site_attempts: int = 0
    batch_size: int = 1
    seed: int = 1
    serial_prefix: str = "SN"
    duplicate_serials: int = 0
    untrusted_attempts: int = 0
    copied_records: int = 0
    drift_after: int | None = None
    drift_sigma: float = 3.0
    drift_measurement: str = "vcc_3v3"
    burst: int = 0
    panel: int = 1


# Records in one batch upload at most: the server's default ``max_batch_records``.
MAX_RECORDS_PER_UPLOAD = 200


@dataclass
class LineReport:
    attempted: int = 0
    provisioned: int = 0
    replayed: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    tests_uploaded: int = 0
    tests_failed: int = 0
    retests: int = 0
    scrapped: int = 0
    certificates: dict[str, str] = field(default_factory=dict)
    # Each issued board's key, by serial: a simulation's to hand out (the demo writes them, marked demo-only,
    # for the field check); a real device's key never leaves its secure element.
    device_keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    def to_dict(self, ordered: int) -> dict[str, Any]:
        return {
            "ordered": ordered,
            "attempted": self.attempted,
            "provisioned": self.provisioned,
            "refused": dict(sorted(self.refused.items())),
            "tests": {
                "uploaded": self.tests_uploaded,
                "failed": self.tests_failed,
                "retests": self.retests,
                "scrapped": self.scrapped,
            },
        }


ProgressFn = Callable[[str, str | None], None]
"""Called after each provisioning attempt with (kind, refusal code or None)."""


def _drifted(procedure: Sequence[MeasurementSpec], name: str, sigmas: float) -> tuple[MeasurementSpec, ...]:
    if name not in {m.name for m in procedure}:
        raise ValueError(f"the test procedure has no measurement {name!r} to drift")
    return tuple(replace(m, nominal=m.nominal + sigmas * m.sigma) if m.name == name else m for m in procedure)


class ProductionLine:
    def __init__(
        self,
        fixtures: list[Credentials],
        config: LineConfig,
        *,
        wrong_site: Credentials | None = None,
        untrusted: Credentials | None = None,
        on_attempt: ProgressFn | None = None,
    ) -> None:
        if not fixtures:
            raise ValueError("a line needs at least one fixture")
        if config.panel < 1:
            raise ValueError("a panel holds at least one board")
        self.config = config
        self._drift_procedure = (
            _drifted(DEFAULT_PROCEDURE, config.drift_measurement, config.drift_sigma)
            if config.drift_after is not None
            else DEFAULT_PROCEDURE
        )
        self.clients = [FixtureClient(c) for c in fixtures]
        self.wrong_site = FixtureClient(wrong_site) if wrong_site else None
        self.untrusted = FixtureClient(untrusted) if untrusted else None
        self.on_attempt = on_attempt or (lambda kind, code: None)
        self.report = LineReport()
        self._lock = threading.Lock()
        self._genuine: list[SimulatedDevice] = []
        self._passed: dict[str, dict[str, Any]] = {}  # serial -> the genuine board's passing test record

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for extra in (self.wrong_site, self.untrusted):
            if extra:
                extra.close()

    def __enter__(self) -> ProductionLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Steps
    def _rng_for(self, n: int, stream: str = "genuine") -> random.Random:
        """Job ``n``'s random numbers; each attack draws from its own stream, so no two jobs measure alike."""
        if stream == "genuine":
            return random.Random(self.config.seed * 1_000_003 + n)
        return random.Random(f"{self.config.seed}/{stream}/{n}")

    def _pick(self, stream: str, pool: list[T], k: int) -> list[T]:
        """``k`` boards of ``pool`` (all different while the pool lasts), the same ones for the same seed."""
        if not pool or k <= 0:
            return []
        rng = self._rng_for(0, f"pick-{stream}")
        picked = rng.sample(pool, min(k, len(pool)))
        return picked + [rng.choice(pool) for _ in range(k - len(picked))]

    def _procedure_for(self, number: int) -> tuple[MeasurementSpec, ...]:
        """The procedure as the ``number``-th board (1-based) measures it: drifted past ``drift_after``."""
        after = self.config.drift_after
        return self._drift_procedure if after is not None and number > after else DEFAULT_PROCEDURE

    def _test(
        self,
        client: FixtureClient,
        device: SimulatedDevice,
        rng: random.Random,
        *,
        force_pass: bool = False,
        procedure: tuple[MeasurementSpec, ...] = DEFAULT_PROCEDURE,
        send: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any] | None:
        """Run the unit's test (and retests after repair); the record that finally passed, or None.

        Each record goes to ``send`` as it is made: by default uploaded at once, one request each."""
        send = send or client.upload_test_record
        station = client.credentials.fixture_id
        fail = not force_pass and rng.random() < self.config.fail_rate
        record = openhtf_record(device.serial, station, fail=fail, rng=rng, procedure=procedure)
        send(record)
        with self._lock:
            self.report.tests_uploaded += 1
            self.report.tests_failed += int(fail)
        while fail:
            if rng.random() >= self.config.retest_rate:
                with self._lock:
                    self.report.scrapped += 1
                return None
            fail = rng.random() < self.config.fail_rate
            record = openhtf_record(device.serial, station, fail=fail, rng=rng, procedure=procedure)
            send(record)
            with self._lock:
                self.report.tests_uploaded += 1
                self.report.retests += 1
                self.report.tests_failed += int(fail)
        return record

    @staticmethod
    def _upload(client: FixtureClient, records: list[dict[str, Any]]) -> None:
        """Upload a panel's records in batch requests, in order; a refused record fails the run, as
        a refused single upload does."""
        for i in range(0, len(records), MAX_RECORDS_PER_UPLOAD):
            for result in client.upload_test_records(records[i : i + MAX_RECORDS_PER_UPLOAD]):
                if result["status"] != "stored":  # 422: what a single upload answers for a bad record
                    error = result["error"]
                    raise FabGuardClientError(422, str(error["code"]), str(error["message"]))

    def _provision(self, client: FixtureClient, devices: list[SimulatedDevice], kind: str) -> None:
        if self.config.batch_size > 1 and len(devices) > 1:
            results = client.provision_batch(self.config.order_id, [(d.serial, d.csr_pem()) for d in devices])
            for device, result in zip(devices, results, strict=True):
                if result["status"] == "issued":
                    self._issued(device, result["certificate"], result["replayed"], kind)
                else:
                    self._refused(result["error"]["code"], kind)
            return
        for device in devices:
            try:
                issued = client.provision(self.config.order_id, device.serial, device.csr_pem())
            except FabGuardClientError as exc:
                self._refused(exc.code, kind)
            else:
                self._issued(device, issued.certificate_pem, issued.replayed, kind)

    def _issued(self, device: SimulatedDevice, pem: str, replayed: bool, kind: str) -> None:
        device.certificate_pem = pem
        with self._lock:
            self.report.attempted += 1
            self.report.provisioned += int(not replayed)
            self.report.replayed += int(replayed)
            self.report.certificates[device.serial] = pem
            self.report.device_keys[device.serial] = device.key
            if kind == "genuine":
                self._genuine.append(device)
        self.on_attempt(kind, None)

    def _refused(self, code: str, kind: str) -> None:
        with self._lock:
            self.report.attempted += 1
            self.report.refused[code] += 1
        self.on_attempt(kind, code)

    # Jobs
    def _genuine_batch(
        self,
        client: FixtureClient,
        n: int,
        serials: list[tuple[int, str]],
        kind: str,
        send: Callable[[dict[str, Any]], object] | None = None,
    ) -> list[SimulatedDevice]:
        """Provisioning batch ``n``'s boards (numbers and serials) tested; the boards that passed, in order."""
        rng = self._rng_for(n, kind)
        passed = []
        for number, serial in serials:
            device = SimulatedDevice(serial)
            record = self._test(client, device, rng, procedure=self._procedure_for(number), send=send)
            if record is not None:
                passed.append(device)
                if kind == "genuine":
                    with self._lock:
                        self._passed[serial] = record
        return passed

    def _genuine_panel(self, p: int, jobs: list[tuple[int, list[tuple[int, str]]]], kind: str = "genuine") -> None:
        """Panel ``p``'s provisioning batches, tested and provisioned by one fixture. Without panels (one
        batch a job) each record is uploaded as it is made; on a panel, all of them in one upload."""
        client = self.clients[p % len(self.clients)]
        records: list[dict[str, Any]] = []
        send = records.append if self.config.panel > 1 else None
        tested = [self._genuine_batch(client, n, serials, kind, send) for n, serials in jobs]
        self._upload(client, records)
        for passed in tested:
            if passed:
                self._provision(client, passed, kind)

    def _skip_test(self, n: int, serial: str) -> None:
        self._provision(self.clients[n % len(self.clients)], [SimulatedDevice(serial)], "skipped_test")

    def _clone(self, n: int, serial: str, original: SimulatedDevice) -> None:
        client = self.clients[n % len(self.clients)]
        clone = original.clone_as(serial)
        self._test(client, clone, self._rng_for(n, "clone"), force_pass=True)
        self._provision(client, [clone], "clone")

    def _duplicate_serial(self, n: int, original: SimulatedDevice) -> None:
        """A second board labelled with a provisioned board's serial, with a key of its own."""
        client = self.clients[n % len(self.clients)]
        duplicate = SimulatedDevice(original.serial)
        self._test(client, duplicate, self._rng_for(n, "duplicate"), force_pass=True)
        self._provision(client, [duplicate], "duplicate_serial")

    def _copied_record(self, n: int, serial: str, original: dict[str, Any]) -> None:
        """A board never measured: a genuine board's passing record, the serial and times changed."""
        client = self.clients[n % len(self.clients)]
        record = copy.deepcopy(original)
        shift = int(time.time() * 1000) - int(record["start_time_millis"])
        record["dut_id"] = serial
        record["station_id"] = client.credentials.fixture_id
        record["start_time_millis"] += shift
        record["end_time_millis"] += shift
        for phase in record["phases"]:
            phase["start_time_millis"] += shift
            phase["end_time_millis"] += shift
        client.upload_test_record(record)
        with self._lock:
            self.report.tests_uploaded += 1
        self._provision(client, [SimulatedDevice(serial)], "copied_record")

    def _wrong_site(self, n: int, serial: str) -> None:
        assert self.wrong_site is not None
        device = SimulatedDevice(serial)
        self._test(self.wrong_site, device, self._rng_for(n, "wrong_site"), force_pass=True)
        self._provision(self.wrong_site, [device], "wrong_site")

    def _untrusted(self, serial: str) -> None:
        assert self.untrusted is not None
        self._provision(self.untrusted, [SimulatedDevice(serial)], "untrusted_fixture")

    def run(self) -> LineReport:
        """Build every unit; returns when the line has finished."""
        cfg = self.config
        p = cfg.serial_prefix
        step = max(cfg.batch_size, 1)

        # Provisioning batches a job: a panel holds at least ``panel`` boards, in whole batches.
        per_panel = 1 if cfg.panel == 1 else -(-cfg.panel // step)

        def panels(numbered: list[tuple[int, str]]) -> list[list[tuple[int, list[tuple[int, str]]]]]:
            jobs = list(enumerate(numbered[i : i + step] for i in range(0, len(numbered), step)))
            return [jobs[i : i + per_panel] for i in range(0, len(jobs), per_panel)]

        units = panels([(i, f"{p}{i:07d}") for i in range(1, cfg.units + 1)])
        burst = panels([(cfg.units + i, f"{p}B{i:06d}") for i in range(1, cfg.burst + 1)])
        with ThreadPoolExecutor(max_workers=len(self.clients)) as pool:
            futures = [pool.submit(self._genuine_panel, n, jobs) for n, jobs in enumerate(units)]
            futures += [pool.submit(self._skip_test, n, f"{p}S{n:06d}") for n in range(cfg.skip_tests)]
            if self.wrong_site is not None:
                futures += [pool.submit(self._wrong_site, n, f"{p}W{n:06d}") for n in range(cfg.wrong_site_attempts)]
            if self.untrusted is not None:
                futures += [pool.submit(self._untrusted, f"{p}U{n:06d}") for n in range(cfg.untrusted_attempts)]
            for f in futures:
                f.result()
            # The burst follows the line's own units, as fast as the fixtures go.
            for f in [pool.submit(self._genuine_panel, n, jobs, "burst") for n, jobs in enumerate(burst)]:
                f.result()
            # Clones, duplicates and copies come from boards already built, so they come last.
            genuine = sorted(self._genuine, key=lambda d: d.serial)
            passed = [self._passed[s] for s in sorted(self._passed)]
            futures = [
                pool.submit(self._clone, n, f"{p}C{n:06d}", d)
                for n, d in enumerate(self._pick("clone", genuine, cfg.clones))
            ]
            futures += [
                pool.submit(self._duplicate_serial, n, d)
                for n, d in enumerate(self._pick("duplicate", genuine, cfg.duplicate_serials))
            ]
            futures += [
                pool.submit(self._copied_record, n, f"{p}R{n:06d}", r)
                for n, r in enumerate(self._pick("copy", passed, cfg.copied_records))
            ]
            for f in futures:
                f.result()
        return self.report
