"""A field check's input, parsed once at the edge: the device's answer and where it was seen.

A malformed answer or source is refused: alone (``parse_answer``, ``parse_origin``) it is recorded as a
``field.refused`` event at once; in a batch (``read_answer``) the refusal is recorded with its group.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from fabguard.domain import field
from fabguard.domain.errors import FabGuardError
from fabguard.pki.field import parse_chain, parse_signature
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance

CHECKED = "field.checked"
REFUSED = "field.refused"
MAX_CLIENT = 64


@dataclass(frozen=True, slots=True)
class Answer:
    """A device's answer to a challenge, parsed: the nonce, its signature and its certificate."""

    nonce: bytes
    signature: bytes
    leaf: x509.Certificate


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asks (the token's actor) and where the device was seen (a label, the caller's address)."""

    actor: str
    source: str | None = None
    client: str | None = None

    @property
    def place(self) -> str:
        return field.place_of(self.source, self.client)

    def detail(self) -> dict[str, object]:
        return {"source": self.source, "client": self.client}


def read_answer(nonce: str, signature: str, chain_pem: str) -> Answer:
    """An answer's three parts parsed (``InvalidRequest`` with the part's code when one is malformed)."""
    return Answer(field.parse_nonce(nonce), parse_signature(signature), parse_chain(chain_pem))


def read_origin(actor: str, source: str | None, client: str | None) -> Origin:
    """The origin of a check, its source label checked, the client address cut to its column."""
    return Origin(actor, field.parse_source(source), client[:MAX_CLIENT] if client else None)


def parse_answer(inst: Instance, origin: Origin, *, nonce: str, signature: str, chain_pem: str) -> Answer:
    """Parse an answer as the API and CLI receive it; a malformed one is refused and recorded."""
    try:
        return read_answer(nonce, signature, chain_pem)
    except FabGuardError as exc:
        record_refusal(inst, REFUSED, exc, actor=origin.actor, detail=origin.detail())
        raise


def parse_origin(inst: Instance, *, actor: str, source: str | None, client: str | None) -> Origin:
    """The origin of a check, its source label checked (a bad label is refused and recorded)."""
    try:
        return read_origin(actor, source, client)
    except FabGuardError as exc:
        client = client[:MAX_CLIENT] if client else None
        record_refusal(inst, REFUSED, exc, actor=actor, detail={"client": client})
        raise
