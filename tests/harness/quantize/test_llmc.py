"""RTN, GPTQ and AWQ through llm-compressor on a tiny random model: formats, grids, refusals."""

from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.data.calibration import CalibrationSet
from qresafe_bench.harness.quantize.base import QuantError, QuantRecipe, check_supported
from qresafe_bench.harness.quantize.llmc import quantize

CALIB = CalibrationSet("benign", tuple(
    ({"role": "user", "content": f"Explain how item {i} works."},
     {"role": "assistant", "content": f"Item {i} works by turning slowly."}) for i in range(8)))


def _load(path: Path):
    """Load with dense (decompressed) weights, so tests can read them."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    if (path / "qresafe_recipe.yaml").exists() or "quantization_config" in (path / "config.json").read_text():
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=CompressedTensorsConfig(run_compressed=False))
    return AutoModelForCausalLM.from_pretrained(path)


@pytest.mark.parametrize(("method", "bits"), [("rtn", 4), ("rtn", 2), ("gptq", 3), ("awq", 4)])
def test_method_writes_compressed_tensors_that_generate(tiny_random_dir: Path, tmp_path: Path, method, bits) -> None:
    import json

    recipe = QuantRecipe(method=method, bits=bits, group_size=16, calib="none" if method == "rtn" else "benign",
                         max_seq_length=32)
    quantize(tiny_random_dir, recipe, CALIB, tmp_path, log=lambda _: None)
    config = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors"
    weights = config["config_groups"]["group_0"]["weights"]
    assert weights["num_bits"] == bits and weights["group_size"] == 16
    model = _load(tmp_path)
    out = model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_rtn_changes_weights_more_at_fewer_bits(tiny_random_dir: Path, tmp_path: Path) -> None:
    base = _load(tiny_random_dir).model.layers[0].mlp.down_proj.weight.detach()
    errors = {}
    for bits in (8, 4, 2):
        out = tmp_path / f"w{bits}"
        quantize(tiny_random_dir, QuantRecipe(method="rtn", bits=bits, group_size=16), None, out, log=lambda _: None)
        quantized = _load(out).model.layers[0].mlp.down_proj.weight.detach()
        errors[bits] = (quantized - base).norm() / base.norm()
    assert errors[8] < errors[4] < errors[2]
    assert errors[8] < 0.01


def test_group_size_must_divide_the_width(tiny_random_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantError, match="does not divide"):
        quantize(tiny_random_dir, QuantRecipe(method="rtn", bits=4, group_size=24), None, tmp_path, log=lambda _: None)


def test_bits_matrix_refusals() -> None:
    with pytest.raises(QuantError, match="supports 8 bits"):
        check_supported("bnb-int8", 4)
    with pytest.raises(QuantError, match="supports 4 bits"):
        check_supported("qlora", 2)
    assert check_supported("gptq", 2).name == "gptq"


def test_cpu_pin_memory_workaround_is_scoped() -> None:
    from llmcompressor.pipelines.cache import IntermediatesCache

    from qresafe_bench.harness.quantize._cpu import no_pinned_memory_without_accelerator

    original = IntermediatesCache.pin_memory
    with no_pinned_memory_without_accelerator() as active:
        assert active is (not torch.cuda.is_available())
        if active:
            assert IntermediatesCache.pin_memory is not original
    assert IntermediatesCache.pin_memory is original
