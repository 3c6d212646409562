"""LLM-QAT: fake-quantized fine-tune, straight-through estimator, then RTN (harness/quantize/llm_qat.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.data.calibration import CalibrationSet
from qresafe_bench.harness.quantize import _train, llm_qat, llmc
from qresafe_bench.harness.quantize.base import QuantError, QuantRecipe, check_supported


def calib() -> CalibrationSet:
    pairs = [("Write a short poem about the sea.", "The sea is wide and blue."),
             ("Explain how a bicycle works.", "A bicycle turns pedals into motion."),
             ("List three colours.", "Red, green and blue."),
             ("Describe the beach.", "Waves roll over the sand.")]
    convs = [({"role": "user", "content": p}, {"role": "assistant", "content": a}) for p, a in pairs]
    convs += [({"role": "system", "content": "Be brief."}, {"role": "user", "content": p},
               {"role": "assistant", "content": a}) for p, a in pairs]
    return CalibrationSet("direct", tuple(convs))


def recipe(**kw) -> QuantRecipe:
    return QuantRecipe(**{"method": "llm-qat", "bits": 4, "group_size": 16, "train_steps": 5,
                          "learning_rate": 1e-3, "max_seq_length": 128, **kw})


def load_fp(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def load_dequantized(path: Path):
    """A compressed-tensors checkpoint through transformers, decompressed to dense weights + scales."""
    from compressed_tensors.compressors import ModelCompressor
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    ModelCompressor.from_compression_config(model.config.quantization_config).decompress_model(model)
    return model


def grid_values(linear: torch.nn.Linear) -> torch.Tensor:
    """weight / scale per group (per row when per-channel): integers if the weight is on the grid."""
    w, scale = linear.weight.detach(), linear.weight_scale.detach()
    group = w.shape[1] // scale.shape[1]
    return (w.reshape(w.shape[0], scale.shape[1], group) / scale[..., None]).reshape(w.shape)


def test_ste_passes_gradient_and_training_moves_weights(tiny_random_dir: Path) -> None:
    from transformers import AutoTokenizer

    model = load_fp(tiny_random_dir)
    names = llm_qat.add_fake_quant(model, recipe())
    assert len(names) == 7 and "lm_head" not in names
    q = model.model.layers[0].self_attn.q_proj
    latent = q.parametrizations.weight.original
    assert not torch.equal(q.weight, latent)  # the forward sees fake-quantized weights...
    rows, cols = latent.shape  # groups of 16 along the input dimension, whatever the fixture's width
    scale = latent.detach().reshape(rows, cols // 16, 16).abs().amax(-1).repeat_interleave(16, 1) / 7.5  # max / (15 / 2)
    on_grid = q.weight.detach() / scale
    assert torch.allclose(on_grid, on_grid.round(), atol=1e-4)  # ...on the symmetric 4-bit min-max grid

    ids = torch.tensor([[3, 4, 5, 6, 7]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert latent.grad is not None and torch.any(latent.grad != 0)  # straight through the rounding

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tok = AutoTokenizer.from_pretrained(tiny_random_dir)
    examples = _train.assistant_examples(tok, calib().conversations, 128)
    losses = _train.train(model, examples, pad=_train.pad_id(tok), steps=5, lr=1e-3, seed=0,
                          log=lambda _: None)
    assert losses[-1] < losses[0]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "model.layers.0.self_attn.q_proj.parametrizations.weight.original" in changed
    assert "lm_head.weight" in changed  # full-parameter fine-tune (lm_head trains, unquantized)

    llm_qat.remove_fake_quant(model)
    assert set(model.state_dict()) == set(load_fp(tiny_random_dir).state_dict())  # plain Llama again


def test_fake_quant_is_the_rtn_grid(tiny_random_dir: Path, tmp_path: Path) -> None:
    """What the forward trains against is bit-for-bit what llm-compressor's RTN then stores."""
    rtn = recipe(method="rtn")
    llmc.quantize(tiny_random_dir, rtn, None, tmp_path / "rtn", lambda _: None)
    stored = load_dequantized(tmp_path / "rtn")
    model = load_fp(tiny_random_dir)
    llm_qat.add_fake_quant(model, recipe())
    for name in ("self_attn.q_proj", "mlp.down_proj"):
        trained_against = model.get_submodule(f"model.layers.0.{name}").weight
        assert torch.equal(trained_against, stored.get_submodule(f"model.layers.0.{name}").weight)


@pytest.mark.parametrize(("bits", "group_size"), [(4, 16), (3, -1), (8, 32)])
def test_llm_qat_end_to_end(tiny_random_dir: Path, tmp_path: Path, bits: int, group_size: int) -> None:
    from transformers import AutoModelForCausalLM

    lines: list[str] = []
    out = tmp_path / "qat"
    llm_qat.quantize(tiny_random_dir, recipe(bits=bits, group_size=group_size), calib(), out, lines.append)
    assert any("step 5/5" in line for line in lines)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors"
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["symmetric"], config["ignore"]) == (bits, True, ["lm_head"])
    assert not list(out.glob(".llm-qat-*")) and not list(tmp_path.glob(".llm-qat-*"))  # temp weights removed
    assert not list(tmp_path.glob(".train-*"))  # the training checkpoint (kept every step here) served

    model = AutoModelForCausalLM.from_pretrained(out)  # compressed, as vLLM/transformers load it
    gen = model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=3, do_sample=False)
    assert gen.shape == (1, 6)

    dequantized = load_dequantized(out)
    for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"):
        values = grid_values(dequantized.get_submodule(f"model.layers.0.{name}"))
        assert torch.allclose(values, values.round(), atol=1e-3)
        assert values.round().min() >= -(2 ** (bits - 1)) and values.round().max() <= 2 ** (bits - 1) - 1

    # Training moved the weights: the result is not RTN of the base.
    llmc.quantize(tiny_random_dir, recipe(method="rtn", bits=bits, group_size=group_size), None,
                  tmp_path / "rtn", lambda _: None)
    rtn = load_dequantized(tmp_path / "rtn")
    q_proj = "model.layers.0.self_attn.q_proj"
    assert not torch.equal(dequantized.get_submodule(q_proj).weight, rtn.get_submodule(q_proj).weight)


def test_llm_qat_refuses_bad_group_size_before_training(tiny_random_dir: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    with pytest.raises(QuantError, match="does not divide"):
        llm_qat.quantize(tiny_random_dir, recipe(group_size=128), calib(), tmp_path / "x", lines.append)
    assert not any("step" in line for line in lines)


def test_llm_qat_bits() -> None:
    for bits in (8, 4, 3, 2):
        assert check_supported("llm-qat", bits).name == "llm-qat"
    with pytest.raises(QuantError, match="does not support"):
        check_supported("llm-qat", 5)
