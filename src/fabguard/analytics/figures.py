"""The one definition of every production figure (docs/figures.md says the same, in words).

Every surface (the dashboard overview, the order page, ``/api/v1/stats/production``, ``fabguard stats``
and the reports) computes these figures through the functions here, from the same counts over the
same units, so they cannot disagree.

The counts are over *units*: distinct serials, each counted once, in the window of its **first**
test. A unit whose latest test failed is **scrapped** (it cannot ship as things stand); it stays in
every figure, so a scrapped board lowers the final yield rather than dropping out of it. Rates are
``None`` when no unit was tested (nothing to divide by), never 0.
"""

from __future__ import annotations


def _share(part: int, units: int) -> float | None:
    return part / units if units else None


def first_pass_yield(first_pass: int, units: int) -> float | None:
    """First-pass yield: units whose **first** test passed / units tested."""
    return _share(first_pass, units)


def final_yield(final_pass: int, units: int) -> float | None:
    """Final yield: units whose **latest** test passed / units tested (scrapped units included)."""
    return _share(final_pass, units)


def retest_rate(retested: int, units: int) -> float | None:
    """Retest rate: units tested more than once / units tested."""
    return _share(retested, units)


def scrapped(final_pass: int, units: int) -> int:
    """Scrap: units tested whose **latest** test did not pass (units tested - units finally passed).

    Provisioning needs a passing latest test, so a scrapped unit is one never provisioned (or, rarely,
    one provisioned and then failing a later test: it cannot ship either)."""
    return units - final_pass


def scrap_rate(final_pass: int, units: int) -> float | None:
    """Scrap rate: scrapped units / units tested, so final yield + scrap rate = 1."""
    return _share(scrapped(final_pass, units), units)


def throughput_per_hour(provisioned: int, hours: float) -> float:
    """Throughput: units provisioned in the window / the window's length in hours (0 for an empty window)."""
    return provisioned / hours if hours > 0 else 0.0
