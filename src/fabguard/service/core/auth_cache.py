"""A process's memory of who authenticated, valid for one auth generation (``store.auth_generation``, ADR 0017).

Entries are kept under the generation that was read *before* their facts were: a revocation that commits
between the two reads bumps the generation past the one they are kept under, so the next request reads the
new generation, misses, and reads the facts again. Any change of generation drops every entry. Held by the
``Instance`` (one per process), never by a module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from fabguard.domain.issuance import FixtureFacts

K = TypeVar("K")
V = TypeVar("V")

MAX_ENTRIES = 100_000  # fixtures of one deployment, with room; past it the memory starts again


@dataclass(frozen=True)
class FixtureIdentity:
    """What authenticating a fixture's certificate needs: the active fixture, and when its certificate ends."""

    facts: FixtureFacts
    cert_not_after: datetime | None


class GenerationCache(Generic[K, V]):
    """Values read from the database, each valid while the auth generation stays what it was when read.

    Thread-safe for the server's request threads: the generation and its entries are replaced together
    (one assignment), and a dict's get and set are atomic."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._state: tuple[int | None, dict[K, V]] = (None, {})

    def get(self, generation: int, key: K) -> V | None:
        held, entries = self._state
        return entries.get(key) if held == generation else None

    def put(self, generation: int, key: K, value: V) -> None:
        held, entries = self._state
        if held != generation:
            if held is not None and held > generation:
                return  # read under an older generation than another thread has seen since: not kept
            entries = {}
            self._state = (generation, entries)
        if len(entries) >= self.max_entries:
            entries.clear()
        entries[key] = value

    def clear(self) -> None:
        self._state = (None, {})


__all__ = ["MAX_ENTRIES", "FixtureIdentity", "GenerationCache"]
