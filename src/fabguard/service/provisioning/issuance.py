"""Provisioning a unit: the one transaction that matters (docs/architecture.md).

Authorize (pure policies over facts read in the transaction), take quota atomically, sign, record the
unit and its event, commit; only then is the certificate returned. A refusal consumes nothing and is
recorded. The units of concurrent requests may share that transaction (group commit,
``service/provisioning/group.py``): each is still decided on its own, and none is answered before the commit.

Each function takes a ``runner``, what decides the units: by default ``run_jobs`` in the caller's
thread; the server passes its writer thread's, which groups the units of concurrent requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from fabguard.domain.errors import FabGuardError, InvalidRequest, Unavailable
from fabguard.domain.issuance import FixtureFacts
from fabguard.service.core import idempotency
from fabguard.service.core.idempotency import Answer, Keyed
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.group import Job, Outcome, Runner, run_jobs
from fabguard.service.provisioning.unit_requests import Provisioned, UnitRequest, UnparsedUnit

__all__ = [
    "Provisioned",
    "UnitRequest",
    "UnparsedUnit",
    "answered",
    "provision_batch",
    "provision_batch_once",
    "provision_unit",
    "provision_unit_once",
    "provisioned",
    "unit_job",
]


def _runner(inst: Instance, runner: Runner | None) -> Runner:
    return runner if runner is not None else partial(run_jobs, inst)


def unit_job(fixture: FixtureFacts, request: UnitRequest | UnparsedUnit, key: Keyed | None = None) -> Job:
    """One unit to decide, for a runner or for a writer the caller awaits (the API's event loop)."""
    return Job(fixture, request, key)


def provisioned(outcome: Outcome) -> Provisioned:
    """A unit's outcome without an idempotency key: its certificate, or its refusal or error raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    assert isinstance(outcome, Provisioned)
    return outcome


def answered(outcome: Outcome) -> Answer:
    """A unit's outcome under an idempotency key: the answer kept under it, or its error raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    assert isinstance(outcome, Answer)
    return outcome


def provision_unit(
    inst: Instance, fixture: FixtureFacts, request: UnitRequest | UnparsedUnit, *, runner: Runner | None = None
) -> Provisioned:
    """Decide, and if allowed issue, the device certificate for one unit.

    A refusal (an unparsed request's too) is recorded and raised, and nothing is consumed.
    """
    return provisioned(_runner(inst, runner)([unit_job(fixture, request)])[0])


def provision_unit_once(
    inst: Instance,
    fixture: FixtureFacts,
    request: UnitRequest | UnparsedUnit,
    key: Keyed,
    *,
    runner: Runner | None = None,
) -> Answer:
    """:func:`provision_unit` under an idempotency key. The answer, a refusal too (as the draft says: the
    response, whatever it is), is kept in the transaction that issued the certificate or recorded the
    refusal; a resend gets it back, and a refusal is recorded once, however often it is resent."""
    return answered(_runner(inst, runner)([unit_job(fixture, request, key)])[0])


def provision_batch(
    inst: Instance,
    fixture: FixtureFacts,
    units: Sequence[UnitRequest | UnparsedUnit],
    *,
    runner: Runner | None = None,
) -> list[dict[str, object]]:
    """Many units in one request, each decided on its own, answered in order."""
    _check_batch(inst, units)
    outcomes = _runner(inst, runner)([Job(fixture, unit) for unit in units])
    _raise_passing(outcomes)
    results: list[dict[str, object]] = []
    for unit, outcome in zip(units, outcomes, strict=True):
        if isinstance(outcome, Provisioned):
            results.append({"status": "issued", **outcome.to_dict()})
        else:
            results.append({"status": "refused", "serial": _serial_of(unit), **_refused(outcome).to_dict()})
    return results


def provision_batch_once(
    inst: Instance,
    fixture: FixtureFacts,
    units: Sequence[tuple[UnitRequest | UnparsedUnit, object]],
    key: Keyed,
    *,
    runner: Runner | None = None,
) -> Answer:
    """:func:`provision_batch` under an idempotency key; ``units`` pairs each request with its JSON (for
    its part's fingerprint). Each unit's answer is kept as a part of the key with that unit's work, the
    batch's at the end."""
    _check_batch(inst, [u for u, _ in units])
    stored = idempotency.begin_batch(inst, key)
    if stored is not None:
        return stored
    try:
        jobs = [Job(fixture, unit, key.unit(index, body)) for index, (unit, body) in enumerate(units)]
        outcomes = _runner(inst, runner)(jobs)
        _raise_passing(outcomes)  # the batch's key is freed below: the resend does the rest
        results: list[dict[str, object]] = []
        for (unit, _), outcome in zip(units, outcomes, strict=True):
            answer = outcome if isinstance(outcome, Answer) else _as_answer(outcome)
            if answer.status < 400:
                results.append({"status": "issued", **answer.body})
            else:
                results.append({"status": "refused", "serial": _serial_of(unit), **answer.body})
    except BaseException:
        idempotency.abandon_batch(inst, key)
        raise
    return idempotency.finish_batch(inst, key, {"results": results})


def _raise_passing(outcomes: Sequence[Outcome]) -> None:
    """A unit that met an outage, or a key still at work, is no answer to keep: the batch fails with it
    (503 or 409, send again); its units already committed replay on the resend."""
    for outcome in outcomes:
        if isinstance(outcome, Unavailable) or (
            isinstance(outcome, FabGuardError) and outcome.code == "idempotency_key_in_progress"
        ):
            raise outcome


def _refused(outcome: Outcome) -> FabGuardError:
    """A unit's error as its batch reports it; anything but a FabGuardError is the batch's failure."""
    if isinstance(outcome, FabGuardError):
        return outcome
    if isinstance(outcome, BaseException):
        raise outcome
    raise AssertionError(f"a unit without a key was answered {outcome!r}")


def _as_answer(outcome: Outcome) -> Answer:
    error = _refused(outcome)
    return Answer(error.status, error.to_dict())


def _check_batch(inst: Instance, units: Sequence[UnitRequest | UnparsedUnit]) -> None:
    if not units:
        raise InvalidRequest("units must be a non-empty list of {serial, csr}")
    if len(units) > inst.limits.max_batch_units:
        raise InvalidRequest(f"a batch may hold at most {inst.limits.max_batch_units} units", code="batch_too_large")


def _serial_of(unit: UnitRequest | UnparsedUnit) -> str | None:
    return unit.serial if isinstance(unit, UnparsedUnit) else unit.serial.value
