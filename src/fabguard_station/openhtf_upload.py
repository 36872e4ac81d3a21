"""An OpenHTF output callback that uploads each unit's test record to FabGuard, through a durable spool.

Use it like OpenHTF's own ``OutputToJSON``::

    uploader = FabGuardUploader(Credentials.load(Path("/etc/fabguard")), Path("/var/spool/fabguard"))
    test.add_output_callbacks(uploader)
    ...
    uploader.flush()   # at shutdown, or from a timer; sends whatever is still pending

Every record is first written to ``spool_dir`` (temporary file, fsync, ``os.replace``), in exactly the JSON
that ``OutputToJSON`` would write, and only then sent. A spooled file is removed only once the server has
stored the record, so a crash, a power cut or an unreachable server never loses a record: whatever is left
in the spool is sent, oldest first, by the next callback or ``flush()`` (also from a new process). The
guarantee is exactly-once: each request goes with an ``Idempotency-Key`` kept in the spool with its batch
(``spool_files``), so a resend after a crash or a lost answer gets the server's first answer back and
stores nothing twice (for as long as the server keeps keys, 24 h by default).

What happens after a failed upload depends on why it failed:

* The network, a timeout, a 5xx, 408 or 429: the record stays pending. The callback then skips the network
  until ``backoff(n)`` seconds after the n-th consecutive failure (the line is never held up by a dead
  server); ``flush()`` tries up to ``max_attempts`` times, sleeping ``backoff(n)`` in between.
* 401 or 403 (the fixture is unknown, revoked or at the wrong site): the fixture, not the record, is refused;
  the record stays pending like above and the refusal is logged as an error.
* Any other 4xx: the server refuses this record and will refuse it again. It moves to ``spool_dir/rejected/``
  with ``<name>.error.json`` beside it (code, message, HTTP status) and is never sent again.

With ``batch_size > 1`` the callback sends only full batches (one request per ``batch_size`` records,
through ``upload_test_records``) and ``flush()`` sends the rest; call ``flush()`` before provisioning a
unit whose record may still be waiting for its batch.

One uploader per spool directory. OpenHTF is imported only when a ``TestRecord`` is converted, so this
module (like the rest of ``fabguard_station``) imports without OpenHTF and without the server's packages.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from fabguard_station.client import Credentials, FabGuardClientError, FixtureClient
from fabguard_station.errors import FixtureError
from fabguard_station.spool_files import (
    TMP_PREFIX,
    InFlight,
    clear_in_flight,
    fsync_dir,
    load_in_flight,
    save_in_flight,
    write_durably,
)

log = logging.getLogger("fabguard_station.openhtf_upload")

REJECTED_DIR = "rejected"
# <sequence>-<dut id, dots replaced>.json; "<same>.error.json" beside a rejected record never matches.
_SPOOLED_RE = re.compile(r"^(\d{12})-[A-Za-z0-9_-]*\.json$")
# Statuses that say "not now" rather than "never": retried like a network error.
_RETRY_STATUSES = frozenset({408, 429})
# Statuses that refuse the fixture itself: the record is not at fault, so it is kept, not rejected.
_FIXTURE_REFUSED_STATUSES = frozenset({401, 403})


class RecordSink(Protocol):
    """What the uploader needs from a client; ``FixtureClient`` is one."""

    def upload_test_record(self, record: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]: ...

    def upload_test_records(
        self, records: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]: ...


def default_backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: 0.5, 1, 2, 4, ... up to 60."""
    return float(min(60.0, 0.5 * 2 ** max(failures - 1, 0)))


def openhtf_record_json(record: Any, *, inline_attachments: bool = True) -> bytes:
    """The bytes OpenHTF's ``OutputToJSON`` writes for ``record`` (an ``openhtf.core.test_record.TestRecord``)."""
    # Lazy: OpenHTF is optional (the station's own environment has it); the uploader itself needs only the SDK.
    from openhtf.output.callbacks.json_factory import OutputToJSON

    buf = io.BytesIO()
    OutputToJSON(buf, inline_attachments=inline_attachments)(record)
    return buf.getvalue()


@dataclass(frozen=True)
class FlushResult:
    """What one delivery round did: records stored, records rejected, records still pending."""

    sent: int
    rejected: int
    pending: int


class _Transient(FixtureError):
    """This round must stop; the records stay pending."""

    code = "upload_deferred"

    def __init__(self) -> None:
        super().__init__("the server cannot take test records now; they stay spooled")


@dataclass
class _Tally:
    sent: int = 0
    rejected: int = 0


class FabGuardUploader:
    """An OpenHTF output callback: spool each ``TestRecord`` durably, then upload it. Thread-safe."""

    def __init__(
        self,
        client_or_credentials: RecordSink | Credentials,
        spool_dir: Path,
        *,
        batch_size: int = 1,
        max_attempts: int = 5,
        backoff: Callable[[int], float] = default_backoff,
        inline_attachments: bool = True,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._owns_client = isinstance(client_or_credentials, Credentials)
        self.client: RecordSink = (
            # the spool retries, same key
            FixtureClient(client_or_credentials, timeout=timeout, retries=0, busy_retry_seconds=0)
            if isinstance(client_or_credentials, Credentials)
            else client_or_credentials
        )
        self.spool_dir = Path(spool_dir)
        self.rejected_dir = self.spool_dir / REJECTED_DIR
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.inline_attachments = inline_attachments
        self._clock = clock
        self._sleep = sleep
        self._spool_lock = threading.Lock()  # naming and writing spool files
        self._send_lock = threading.Lock()  # one delivery round at a time
        self._failures = 0
        self._retry_at = 0.0
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        with self._spool_lock:
            self._next_seq = self._scan_next_seq()
            self._adopt_temp_files()

    # -- OpenHTF's side -------------------------------------------------------------------------------------

    def __call__(self, record: Any) -> None:
        """The output callback: spool ``record`` (a ``TestRecord``, or an already-converted dict), then send.

        Raises only if the record cannot be written to the spool (OpenHTF logs an exception from a callback).
        """
        if isinstance(record, Mapping):
            data = json.dumps(dict(record), allow_nan=False).encode()
            dut_id = record.get("dut_id")
        else:
            data = openhtf_record_json(record, inline_attachments=self.inline_attachments)
            dut_id = getattr(record, "dut_id", None)
        path = self.spool(data, dut_id=dut_id if isinstance(dut_id, str) else None)
        log.info("test record for %s spooled as %s", dut_id, path.name)
        if self._clock() < self._retry_at:
            log.info("server unavailable recently; %s stays spooled until the next attempt", path.name)
            return
        if not self._send_lock.acquire(blocking=False):
            return  # another thread is delivering; this file is picked up by the next round
        try:
            self._round(_Tally(), full_batches_only=True)
        except _Transient:
            pass
        finally:
            self._send_lock.release()

    # -- the spool ------------------------------------------------------------------------------------------

    def spool(self, data: bytes, *, dut_id: str | None = None) -> Path:
        """Write one record's JSON durably into the spool; returns its file. Names sort in arrival order."""
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", dut_id or "unknown")[:64]
        with self._spool_lock:
            tmp = self.spool_dir / f"{TMP_PREFIX}{uuid.uuid4().hex}.json"
            try:
                write_durably(tmp, data)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            while True:
                final = self.spool_dir / f"{self._next_seq:012d}-{safe}.json"
                self._next_seq += 1
                if not final.exists():
                    break
            os.replace(tmp, final)
            fsync_dir(self.spool_dir)
            return final

    def pending(self) -> list[Path]:
        """Spooled records not yet stored by the server, oldest first."""
        return sorted(p for p in self.spool_dir.iterdir() if _SPOOLED_RE.match(p.name) and p.is_file())

    def rejected(self) -> list[Path]:
        """Records the server refused (each with a ``.error.json`` beside it)."""
        return sorted(p for p in self.rejected_dir.iterdir() if _SPOOLED_RE.match(p.name) and p.is_file())

    def _scan_next_seq(self) -> int:
        highest = 0
        for directory in (self.spool_dir, self.rejected_dir):
            for p in directory.iterdir():
                m = _SPOOLED_RE.match(p.name)
                if m:
                    highest = max(highest, int(m.group(1)))
        return highest + 1

    def _adopt_temp_files(self) -> None:
        """A crash while a record was being spooled: keep it (a torn one goes to rejected/, never deleted)."""
        for directory in (self.spool_dir, self.rejected_dir):
            for part in directory.glob(f"{TMP_PREFIX}*.part"):  # an unfinished .error.json
                part.unlink(missing_ok=True)
        for tmp in sorted(self.spool_dir.glob(f"{TMP_PREFIX}*.json")):
            final = self.spool_dir / f"{self._next_seq:012d}-recovered.json"
            self._next_seq += 1
            os.replace(tmp, final)
            log.warning("recovered the spool file %s as %s", tmp.name, final.name)
            try:
                json.loads(final.read_bytes())
            except ValueError:  # torn by the crash: kept for a person to look at, never sent
                self._reject(final, "spool_incomplete", "a spool file was cut short by a crash while written", None)
        fsync_dir(self.spool_dir)

    # -- delivery -------------------------------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Send everything pending, oldest first; retry transient failures up to ``max_attempts`` times.

        Never raises for a delivery problem: the result says how many records are still pending.
        """
        tally = _Tally()
        with self._send_lock:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    self._round(tally, full_batches_only=False)
                    break
                except _Transient:
                    if attempt < self.max_attempts:
                        self._sleep(self.backoff(attempt))
            return FlushResult(tally.sent, tally.rejected, len(self.pending()))

    def _round(self, tally: _Tally, *, full_batches_only: bool) -> None:
        """One pass over the spool, oldest first, a batch left in flight before all; raises _Transient
        (records stay) when the server is out of reach."""
        files = self.pending()
        in_flight = load_in_flight(self.spool_dir)
        while in_flight is not None or (files and not (full_batches_only and len(files) < self.batch_size)):
            if in_flight is None:
                batch, files = files[: self.batch_size], files[self.batch_size :]
            else:
                batch = [p for p in (self.spool_dir / name for name in in_flight.files) if p.is_file()]
                files = [p for p in files if p.name not in in_flight.files]
            try:
                self._send(self._read(batch, tally), in_flight, tally)
            except _Transient:
                self._failures += 1
                self._retry_at = self._clock() + self.backoff(self._failures)
                raise
            in_flight = None
        self._failures = 0
        self._retry_at = 0.0

    def _read(self, batch: list[Path], tally: _Tally) -> list[tuple[Path, dict[str, Any]]]:
        records: list[tuple[Path, dict[str, Any]]] = []
        for path in batch:
            try:
                loaded = json.loads(path.read_bytes())
                if not isinstance(loaded, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                self._reject(path, "spool_unreadable", f"the spooled file is not a JSON object: {exc}", None)
                tally.rejected += 1
                continue
            records.append((path, loaded))
        return records

    def _send(self, records: list[tuple[Path, dict[str, Any]]], in_flight: InFlight | None, tally: _Tally) -> None:
        """Send ``records`` under the key kept in the spool (a new batch gets one first); forget it once done."""
        if in_flight is None and records:
            in_flight = InFlight.new([p for p, _ in records])
            save_in_flight(self.spool_dir, in_flight)
        if in_flight is None:
            return
        if in_flight.results is not None:  # answered before a crash: apply the answer, send nothing
            self._apply(records, in_flight, tally)
        elif len(in_flight.files) == 1:
            for path, data in records:
                self._send_one(path, data, tally, in_flight.key)
        elif records:
            self._send_batch(records, in_flight, tally)
        clear_in_flight(self.spool_dir)

    def _send_batch(self, records: list[tuple[Path, dict[str, Any]]], in_flight: InFlight, tally: _Tally) -> None:
        try:
            results = self.client.upload_test_records([data for _, data in records], idempotency_key=in_flight.key)
        except FabGuardClientError as exc:
            self._check_transient(exc)
            # The whole request was refused (too big, too many...): let each record have its own verdict.
            log.warning("a batch of %d was refused (%s); sending its records one by one", len(records), exc.code)
            for path, data in records:
                self._send_one(path, data, tally, in_flight.part_key(in_flight.files.index(path.name)))
            return
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("uploading %d test records failed: %s", len(records), exc)
            raise _Transient from exc
        if not isinstance(results, list) or len(results) != len(records):
            log.error("the server answered a batch of %d with %r; the batch stays spooled", len(records), results)
            raise _Transient
        answered = InFlight(in_flight.key, [p.name for p, _ in records], results)
        save_in_flight(self.spool_dir, answered)
        self._apply(records, answered, tally)

    def _apply(self, records: list[tuple[Path, dict[str, Any]]], answered: InFlight, tally: _Tally) -> None:
        """Remove the stored records of an answered batch, reject the refused ones (those still spooled)."""
        result_of = dict(zip(answered.files, answered.results or (), strict=False))
        for path, _ in records:
            result = result_of.get(path.name)
            if isinstance(result, dict) and result.get("status") == "stored":
                path.unlink(missing_ok=True)
                tally.sent += 1
            else:
                err = result.get("error") if isinstance(result, dict) else None
                err = err if isinstance(err, dict) else {}
                self._reject(path, str(err.get("code", "refused")), str(err.get("message", result)), None)
                tally.rejected += 1
        fsync_dir(self.spool_dir)

    def _send_one(self, path: Path, data: dict[str, Any], tally: _Tally, key: str) -> None:
        try:
            self.client.upload_test_record(data, idempotency_key=key)
        except FabGuardClientError as exc:
            self._check_transient(exc)
            self._reject(path, exc.code, exc.message, exc.status)
            tally.rejected += 1
            return
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("uploading %s failed: %s", path.name, exc)
            raise _Transient from exc
        path.unlink(missing_ok=True)
        fsync_dir(self.spool_dir)
        tally.sent += 1

    def _check_transient(self, exc: FabGuardClientError) -> None:
        if exc.status >= 500 or exc.status in _RETRY_STATUSES or exc.code == "idempotency_key_in_progress":
            log.warning("the server could not take test records now (%s %s); they stay spooled", exc.status, exc)
            raise _Transient from exc
        if exc.status in _FIXTURE_REFUSED_STATUSES:
            log.error("the server refuses this fixture (%s %s); test records stay spooled", exc.status, exc)
            raise _Transient from exc

    def _reject(self, path: Path, code: str, message: str, status: int | None) -> None:
        error = {"code": code, "message": message, "status": status, "rejected_at": time.time()}
        write_durably(self.rejected_dir / (path.name.removesuffix(".json") + ".error.json"), json.dumps(error).encode())
        os.replace(path, self.rejected_dir / path.name)
        fsync_dir(self.rejected_dir)
        fsync_dir(self.spool_dir)
        log.error("the server refused the test record %s (%s: %s); moved to %s", path.name, code, message, REJECTED_DIR)

    # -- lifetime -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client if this uploader made it (from credentials). Pending records stay spooled."""
        if self._owns_client and isinstance(self.client, FixtureClient):
            self.client.close()

    def __enter__(self) -> FabGuardUploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
