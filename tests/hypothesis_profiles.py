"""Hypothesis profiles, chosen by the ``HYPOTHESIS_PROFILE`` environment variable (tests/conftest.py loads one).

- ``ci`` (what ``scripts/test`` uses when ``CI=true``): every property runs the number of examples its test
  asks for (``examples(n)`` is ``n``; 100 where a test names none), each example within ``DEADLINE``.
- ``dev`` (the default, for a quick run while working): a fifth of that, at least ``MIN_EXAMPLES``.

A test that wants more or fewer examples than the default says so with ``max_examples=examples(n)``: a
number written as it is would override the profile.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
# Generous: the slowest example measured under CI's load is about ten times faster. The deadline is there to
# catch an input that makes the code under test pathologically slow, not to time a loaded machine.
DEADLINE = timedelta(seconds=2)
CI_EXAMPLES = 100  # Hypothesis' own default
DEV_EXAMPLES = 20
MIN_EXAMPLES = 10

settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=DEADLINE, print_blob=True)
settings.register_profile("dev", max_examples=DEV_EXAMPLES, deadline=DEADLINE)


def load() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (``dev`` by default); its name."""
    name = os.environ.get(PROFILE_ENV) or "dev"
    settings.load_profile(name)
    return name


def examples(n: int) -> int:
    """``n`` examples under ``ci``, scaled down with the profile's default under ``dev``."""
    default = settings.default.max_examples  # type: ignore[attr-defined]
    if default >= CI_EXAMPLES:
        return n
    return max(MIN_EXAMPLES, round(n * default / CI_EXAMPLES))
