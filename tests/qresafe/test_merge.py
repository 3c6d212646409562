"""Saving the patch: merge under the existing scales (per integer-grid format) and the adapter form."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.data.calibration import CalibrationSet
from qresafe_bench.harness.quantize.base import QuantRecipe
from qresafe_bench.harness.quantize.llmc import quantize
from qresafe_bench.qresafe import merge

CALIB = CalibrationSet("benign", tuple(
    ({"role": "user", "content": f"Explain how item {i} works."},
     {"role": "assistant", "content": f"Item {i} works by turning slowly."}) for i in range(8)))


def _dense(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=CompressedTensorsConfig(dequantize=True))
    return {k: v.detach().float() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("method", "bits", "group_size"), [
    ("rtn", 4, 16),  # symmetric, grouped (also the format llm-qat saves: it ends in this RTN)
    ("rtn", 8, -1),  # per-channel
    ("gptq", 3, 16),  # odd bit width: values straddle int32 words when packed
    ("awq", 4, 16),  # asymmetric: packed zero points
])
def test_merge_round_trip(tiny_random_dir: Path, tmp_path: Path, method: str, bits: int, group_size: int) -> None:
    quantized = tmp_path / "q"
    quantize(tiny_random_dir, QuantRecipe(method=method, bits=bits, group_size=group_size,
                                          calib="none" if method == "rtn" else "benign", max_seq_length=32),
             CALIB, quantized, log=lambda _: None)
    scheme = merge.grid_scheme(quantized)
    assert (scheme.num_bits, scheme.symmetric) == (bits, method != "awq")
    before = _dense(quantized)
    decoded = merge.dequantized_weights(quantized)
    name, other = "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"
    assert all(torch.equal(decoded[n], before[f"{n}.weight"]) for n in decoded)  # we read the grid exactly

    from safetensors import safe_open

    with safe_open(str(quantized / "model.safetensors"), "pt") as handle:
        scale = merge.expand_to_weight(handle.get_tensor(f"{name}.weight_scale").float(),
                                       tuple(decoded[name].shape), scheme)
    torch.manual_seed(0)
    steps = torch.randint(-2, 3, decoded[name].shape).float()
    below_half_step = 0.4 * scale * torch.sign(torch.randn_like(scale))
    out = tmp_path / "merged"
    stats = merge.merge_into_compressed(quantized, {name: steps * scale + 0.3 * below_half_step,
                                                    other: below_half_step[:, :1].expand(decoded[other].shape) * 0},
                                        out)
    after = _dense(out)
    moved = after[f"{name}.weight"] - before[f"{name}.weight"]
    # exactly k grid steps (up to float rounding of s * (q - z)), except where the grid ends
    inside = (moved - steps * scale).abs() < 1e-3 * scale
    assert 0 < int((~inside).sum()) == stats.clamped < 0.2 * steps.numel()
    assert stats.changed == int((moved.abs() > 1e-3 * scale).sum()) > 0
    assert torch.equal(after[f"{other}.weight"], before[f"{other}.weight"])  # zero delta: unchanged
    for key in before:  # everything else byte-for-byte: scales, norms, embeddings
        if not key.startswith(name):
            assert torch.equal(after[key], before[key]), key
    # Deltas under half a step round away entirely (the grid's resolution; reported, not hidden).
    small = merge.merge_into_compressed(quantized, {name: below_half_step}, tmp_path / "small")
    assert small.changed == 0 and torch.equal(_dense(tmp_path / "small")[f"{name}.weight"], before[f"{name}.weight"])


def test_merge_refuses_non_grid_formats(tiny_random_dir: Path, tmp_path: Path) -> None:
    from qresafe_bench.qresafe.config import PatchError

    with pytest.raises(PatchError, match="not a compressed-tensors checkpoint"):
        merge.merge_into_compressed(tiny_random_dir, {}, tmp_path / "out")


def test_adapter_variant_round_trip(tiny_random_dir: Path, tmp_path: Path) -> None:
    """bitsandbytes: the patch is saved as an adapter beside the 4-bit base and reloads to the same logits."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from qresafe_bench.harness.quantize.bnb import quantize as bnb_quantize

    base = tmp_path / "nf4"
    bnb_quantize(tiny_random_dir, QuantRecipe(method="bnb-nf4", bits=4), None, base, log=lambda _: None)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained-looking adapter
    model.train()  # no repacking (qlora.py's trap) while comparing
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    out = tmp_path / "patched"
    merge.save_adapter_variant(base, model, out)
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "config.json").is_file()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out), out / "adapter")
    reloaded.train()
    with torch.no_grad():
        got = reloaded(input_ids=ids).logits
        with reloaded.disable_adapter():
            unpatched = reloaded(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, unpatched, atol=1e-3)  # the adapter is really applied
