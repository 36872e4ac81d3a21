import pytest

from fabguard.analytics.samples import capabilities, failed_step, histogram, values_of


def test_a_histogram_spans_the_limits_and_counts_what_falls_outside() -> None:
    h = histogram("p", "v", [3.0, 3.1, 3.3, 3.5], 3.05, 3.4, bins=10)
    assert h.n == 4 and sum(h.counts) == 4 and len(h.edges) == 11
    assert h.edges[0] < 3.0 and h.edges[-1] > 3.5
    assert (h.below, h.above) == (1, 1)
    assert h.mean == pytest.approx(3.225)
    assert histogram("p", "v", [], 1.0, 2.0).to_dict()["counts"] == []
    same = histogram("p", "v", [5.0, 5.0], None, None, bins=4)
    assert sum(same.counts) == 2 and same.edges[0] < 5.0 < same.edges[-1]


def test_values_capability_and_failed_steps_come_from_parsed_records() -> None:
    a = ([("power", "PASS")], [("power", "vcc", "PASS", 3.3, 3.2, 3.4), ("power", "i", "PASS", 1.0, None, 2.0)])
    b = ([("power", "FAIL")], [("power", "vcc", "FAIL", 3.5, 3.2, 3.45), ("power", "i", "PASS", None, None, 2.0)])
    c = ([("boot", "FAIL")], [])
    values, lower, upper = values_of([a, b], "power", "vcc")
    assert values == [3.3, 3.5] and (lower, upper) == (3.2, 3.45)
    caps = {x.name: x for x in capabilities([a, b])}
    assert caps["vcc"].n == 2 and caps["i"].n == 1 and caps["vcc"].upper == 3.45
    assert failed_step(b, "power", "vcc") and not failed_step(a, "power", "vcc")
    assert not failed_step(b, "power", None)  # the phase failed through its measurement
    assert failed_step(c, "boot", None) and not failed_step(c, "boot", "x")
