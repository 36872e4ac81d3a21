"""Process settings of FabGuard's long-running entry points."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from fabguard.runtime import GC_YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_tune_gc_raises_only_the_young_generation_threshold(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(700, 11, 13)
    tune_gc()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 11, 13)
    assert gc.isenabled()
