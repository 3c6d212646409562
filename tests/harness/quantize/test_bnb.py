"""bitsandbytes int8 / NF4 / FP4 on CPU: serialized checkpoints that reload and generate."""

from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.quantize.base import QuantError, QuantRecipe
from qresafe_bench.harness.quantize.bnb import quantize


@pytest.mark.parametrize(("method", "bits", "module"), [("bnb-int8", 8, "Linear8bitLt"), ("bnb-nf4", 4, "Linear4bit"),
                                                        ("bnb-fp4", 4, "Linear4bit")])
def test_bnb_roundtrip(tiny_random_dir: Path, tmp_path: Path, method: str, bits: int, module: str) -> None:
    from transformers import AutoModelForCausalLM

    quantize(tiny_random_dir, QuantRecipe(method=method, bits=bits), None, tmp_path, log=lambda _: None)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, device_map="cpu")
    assert type(model.model.layers[0].mlp.down_proj).__name__ == module
    assert model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=2, do_sample=False).shape == (1, 5)


def test_block_size_is_fixed(tiny_random_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantError, match="fixed block size 64"):
        quantize(tiny_random_dir, QuantRecipe(method="bnb-nf4", bits=4, group_size=32), None, tmp_path, log=lambda _: None)
