"""The kinds of act under dual control, each registered by the slice that carries it out.

A kind is a name (stored with each request), a parameters type (a frozen dataclass with ``to_json`` and
``from_json``: what the request carries, stored as JSON and read back when a second person approves),
a check (refuses a request that could not be carried out, when it is made) and an apply (carries it out
in the approval's transaction). ``service/authority/ca_acts.py``, ``service/catalog/order_acts.py``,
``service/agent/lease_acts.py`` and ``service/approvals/person_acts.py`` register theirs when imported;
the API and the CLI import them all (``api/routes/approvals.py``, ``cli/approvals.py``), so every kind a
stored request names can be listed and decided.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, Self, TypeVar

from sqlalchemy.orm import Session

from fabguard.domain.errors import ConfigurationError
from fabguard.service.core.instance import Instance


class Parameters(Protocol):
    """What a request for an act carries: JSON out, and back in (also from the shape older requests have)."""

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self: ...


P = TypeVar("P", bound=Parameters)
P_co = TypeVar("P_co", bound=Parameters, covariant=True)


@dataclass(frozen=True, slots=True)
class Approved(Generic[P_co]):
    """An approved request, as its act sees it."""

    id: int
    target: str
    parameters: P_co
    secret_sha256: str | None
    now: datetime
    actor: str  # the approver
    requested_by: str
    requester_person: str | None = None

    @property
    def detail(self) -> dict[str, object]:
        """What the act's own event adds: which request, and who asked for it."""
        return {"approval_id": self.id, "requested_by": self.requested_by}


@dataclass(frozen=True, slots=True)
class Act(Generic[P]):
    """One kind of act under dual control."""

    kind: str
    summary: str
    parameters: type[P]
    # Refuses a request that could not be carried out (run when it is made, in its transaction).
    check: Callable[[Instance, Session, str, P], None]
    # Carries it out in the approval's transaction; returns what it did (kept on the request).
    apply: Callable[[Instance, Session, Approved[P]], dict[str, object]]
    # What follows once the approval is committed (re-signing a CRL), if anything.
    after: Callable[[Instance], None] | None = None

    def load(self, stored: str | Mapping[str, Any]) -> P:
        """The parameters of a stored request (JSON text, or its object)."""
        return self.parameters.from_json(json.loads(stored) if isinstance(stored, str) else stored)


# The act types of this process: code, not state (filled once, as each slice's module is imported).
_ACTS: dict[str, Act[Any]] = {}
_KINDS: dict[type, str] = {}


def register(
    kind: str,
    parameters: type[P],
    *,
    summary: str,
    check: Callable[[Instance, Session, str, P], None],
    apply: Callable[[Instance, Session, Approved[P]], dict[str, object]],
    after: Callable[[Instance], None] | None = None,
) -> Act[P]:
    """Register the act of ``kind``, whose requests carry ``parameters`` (one type for one kind)."""
    if kind in _ACTS or parameters in _KINDS:
        raise ValueError(f"the act {kind!r} (or its parameters {parameters.__name__}) is registered already")
    act = Act(kind, summary, parameters, check, apply, after)
    _ACTS[kind], _KINDS[parameters] = act, kind
    return act


def act_of(kind: str) -> Act[Any]:
    """The act of a stored request's ``kind``."""
    act = _ACTS.get(kind)
    if act is None:
        raise ConfigurationError(f"no act of kind {kind!r} is registered here: its slice's acts were not imported")
    return act


def act_for(parameters: Parameters) -> Act[Any]:
    """The act whose requests carry ``parameters``."""
    kind = _KINDS.get(type(parameters))
    if kind is None:
        raise ConfigurationError(f"{type(parameters).__name__} are no registered act's parameters")
    return _ACTS[kind]


def registered_kinds() -> frozenset[str]:
    return frozenset(_ACTS)


__all__ = ["Act", "Approved", "Parameters", "act_for", "act_of", "register", "registered_kinds"]
