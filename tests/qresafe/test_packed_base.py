"""Pre-quantized GPTQ / AWQ checkpoints as the patch's quantized model: refused in one line (bases.py), since
the patch's loader for integer grids (compressed-tensors, dequantized) cannot read their packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qresafe_bench.harness.core.errors import QresafeError
from qresafe_bench.harness.models.registry import ResolvedModel
from qresafe_bench.qresafe.bases import PackedBaseError, refuse_packed_base

# quantization_config blocks as the registry's hub checkpoints declare them (TheBloke/Llama-2-7B-Chat-*)
DECLARED = {
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True},
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
}


def _checkpoint(root: Path, quantization: dict | None) -> ResolvedModel:
    root.mkdir(parents=True)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 300}
    if quantization:
        config["quantization_config"] = quantization
    (root / "config.json").write_text(json.dumps(config))
    return ResolvedModel(name="llama2-7b awq w4", location=str(root), source="hub", dtype="float16")


@pytest.mark.parametrize("method", sorted(DECLARED))
def test_packed_checkpoint_is_refused_in_one_line(method: str, tmp_path: Path) -> None:
    with pytest.raises(PackedBaseError) as refused:
        refuse_packed_base(_checkpoint(tmp_path / method, DECLARED[method]))
    message = str(refused.value)
    assert isinstance(refused.value, QresafeError) and "\n" not in message
    assert f"pre-quantized {method.upper()} checkpoint cannot be patched" in message and "--calib" in message


def test_grids_quantized_here_and_unquantized_models_pass(tmp_path: Path) -> None:
    grid = {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": 4}}}}
    refuse_packed_base(_checkpoint(tmp_path / "rtn", grid))
    refuse_packed_base(_checkpoint(tmp_path / "base", None))


@pytest.mark.parametrize("method", sorted(DECLARED))
def test_the_grid_loader_cannot_read_a_packed_checkpoint(method: str, tmp_path: Path) -> None:
    """Why the refusal: transformers rejects the compressed-tensors (dequantizing) config the patch loads
    integer grids with, on a checkpoint that declares a GPTQ or AWQ packing."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    model = _checkpoint(tmp_path / method, DECLARED[method])
    with pytest.raises(ValueError, match="but you are passing a CompressedTensorsConfig"):
        AutoModelForCausalLM.from_pretrained(model.location, use_safetensors=True,
                                             quantization_config=CompressedTensorsConfig(dequantize=True))


def test_run_patch_refuses_a_packed_checkpoint_before_any_pair(tmp_path: Path, monkeypatch) -> None:
    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.qresafe import patch

    packed = _checkpoint(tmp_path / "awq", DECLARED["awq"])
    base = ResolvedModel(name="llama2-7b", location=str(tmp_path), source="hub", dtype="float16")
    monkeypatch.setattr(patch, "resolve_base", lambda *a, **k: base)
    monkeypatch.setattr(patch, "resolve", lambda *a, **k: packed)

    def no_pairs(*_a, **_k):
        raise AssertionError("pairs generated for a checkpoint the patch cannot train")

    monkeypatch.setattr(patch, "preference_pairs", no_pairs)
    request = patch.PatchRequest(spec=VariantSpec("llama2-7b", "awq", 4, "none"))
    with pytest.raises(PackedBaseError):
        patch.run_patch(request, home=tmp_path / "home", log=lambda _m: None)
    assert not (tmp_path / "home" / "variants").exists()
