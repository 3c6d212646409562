import math

import pytest

from qresafe_bench.harness.core.stats import rate_of, wilson


def test_wilson_known_values() -> None:
    # Reference: Wilson 95% interval for 10/100 is [0.0552, 0.1744].
    rate = wilson(10, 100)
    assert rate.value == pytest.approx(0.10)
    assert rate.low == pytest.approx(0.0552, abs=1e-4)
    assert rate.high == pytest.approx(0.1744, abs=1e-4)


def test_wilson_edges_stay_in_unit_interval() -> None:
    zero, full = wilson(0, 520), wilson(520, 520)
    assert zero.low == 0.0 and 0 < zero.high < 0.01
    assert full.high == 1.0 and 0.99 < full.low < 1.0


def test_empty_and_invalid() -> None:
    assert math.isnan(wilson(0, 0).value)
    with pytest.raises(ValueError):
        wilson(3, 2)
    with pytest.raises(ValueError):
        rate_of([0, 1, 0.5])


def test_format_names_n() -> None:
    assert wilson(1, 4).format() == "25.0% [4.6, 69.9] (n=4)"
