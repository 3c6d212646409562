import pytest

from qresafe_bench.harness.core.spec import SpecError, VariantSpec


def test_id_is_stable_and_distinguishes_fields() -> None:
    a = VariantSpec(model="ref-tiny")
    assert a.id == VariantSpec(model="ref-tiny").id
    assert a.id.startswith("ref-tiny-")
    b = VariantSpec(model="ref-tiny", quant="rtn", bits=4, calib="benign")
    assert b.id != a.id and b.slug == "ref-tiny_rtn_w4_benign"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"quant": "foo"}, "unknown --quant"),
    ({"quant": "rtn", "bits": 5}, "--bits 5"),
    ({"quant": "rtn"}, "needs --bits"),
    ({"bits": 4}, "needs a --quant"),
    ({"calib": "benign"}, "needs a --quant"),
    ({"quant": "rtn", "bits": 4, "calib": "evil"}, "unknown --calib"),
])
def test_bad_combinations_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        VariantSpec(model="ref-tiny", **kwargs)


def test_the_vocabulary_is_held_once() -> None:
    from qresafe_bench.harness.core.spec import CALIB_TIERS, DATA_TIERS, METHODS, QUANT_METHODS
    from qresafe_bench.harness.data.calibration import TIERS
    from qresafe_bench.harness.quantize.base import QUANTIZERS

    assert tuple(QUANTIZERS) == METHODS and QUANT_METHODS == ("none", *METHODS)
    assert TIERS is DATA_TIERS and CALIB_TIERS == ("none", *DATA_TIERS)
