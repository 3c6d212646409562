"""The exact mask (`--mask exact`): unmasked LoRA-DPO factors, the merge adds M_Q * s B A on integer grids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qresafe_bench.qresafe import merge
from qresafe_bench.qresafe.config import PatchError, PatchRecipe


@pytest.fixture(scope="module")
def quantized_dir(tiny_random_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro model on a 4-bit symmetric grouped grid (rtn; gptq, awq and llm-qat merge the same way)."""
    from qresafe_bench.harness.quantize.base import QuantRecipe
    from qresafe_bench.harness.quantize.llmc import quantize

    out = tmp_path_factory.mktemp("exact-mask") / "q"
    quantize(tiny_random_dir, QuantRecipe(method="rtn", bits=4, group_size=16, calib="none"), None, out,
             log=lambda _: None)
    return out


def _dequantized(quantized_dir: Path):
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    return AutoModelForCausalLM.from_pretrained(quantized_dir,
                                                quantization_config=CompressedTensorsConfig(dequantize=True))


def _lora_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}


def _grids(path: Path) -> dict[str, torch.Tensor]:
    return {name: q for name, (q, _s, _z, _r) in merge.grid_tensors(path).items()}


def test_merged_update_is_zero_outside_the_mask(make_trainer, quantized_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tau=0.5, steps=4, mask="exact", learning_rate=5e-2, model=_dequantized(quantized_dir))
    trainer.train()
    masks = trainer.update_masks_at(None)
    assert set(masks) == set(trainer.factors) and all(m.dtype == torch.bool for m in masks.values())
    assert all(int(m.sum()) == round(0.5 * m.numel()) for m in masks.values())  # top-tau entries per layer
    deltas = {n: f.delta() for n, f in trainer.factors.items()}
    stats = merge.merge_into_compressed(quantized_dir, deltas, tmp_path / "merged", masks=masks)
    before, after = _grids(quantized_dir), _grids(tmp_path / "merged")
    inside_moved = 0
    for name, mask in masks.items():
        assert torch.equal(after[name][~mask], before[name][~mask])  # outside M_Q: Q0's integers exactly
        inside_moved += int((after[name][mask] != before[name][mask]).sum())
        assert torch.any(deltas[name][~mask] != 0)  # although the trained update is non-zero there
    report = stats.as_dict()
    assert inside_moved == stats.changed == stats.mask_changed > 0 and report["changed_outside_mask"] == 0
    assert stats.mask_entries == sum(int(m.sum()) for m in masks.values())
    assert report["mask_changed_fraction"] == stats.mask_changed / stats.mask_entries
    assert 0.0 < report["update_mass_dropped_fraction"] < 1.0
    summary = trainer.mask_summary()
    assert summary["mask"] == "exact" and summary["trainable_fraction"] == 1.0  # the factors train unmasked
    assert summary["update_mask_bytes"] == summary["update_mask_size"] == sum(m.numel() for m in masks.values())
    assert summary["update_mask_entries"] == stats.mask_entries and summary["update_masks_held"] == 1

    # the held-out checks see the same grid the merge saves (dev_check.GridView with the trainer's M_Q)
    from qresafe_bench.qresafe.dev_check import GridView

    view = GridView(quantized_dir, trainer.factors, lambda: trainer.update_masks)
    with view.applied(trainer.model):
        seen = {n: f.module.base_layer.weight.detach().float().clone() for n, f in trainer.factors.items()}
    saved = merge.dequantized_weights(tmp_path / "merged", list(trainer.factors))
    assert all(torch.allclose(seen[n], saved[n]) for n in trainer.factors)


def test_factors_train_as_plain_lora_dpo_and_tau_one_merges_the_same(make_trainer, quantized_dir: Path,
                                                                     tmp_path: Path) -> None:
    plain = make_trainer(steps=3, plain=True, model=_dequantized(quantized_dir))
    plain.train()
    half = make_trainer(tau=0.5, steps=3, mask="exact", model=_dequantized(quantized_dir))
    half.train()
    whole = make_trainer(tau=1.0, steps=3, mask="exact", model=_dequantized(quantized_dir))
    whole.train()
    reference = _lora_state(plain)
    assert any(torch.any(v) for k, v in reference.items() if "lora_B" in k)  # it trained
    for trainer in (half, whole):  # tau does not touch the factors: no zeroed columns, no masked gradients
        state = _lora_state(trainer)
        assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)

    from qresafe_bench.qresafe.trainer import lora_factors

    merge.merge_into_compressed(quantized_dir, {n: f.delta() for n, f in lora_factors(plain.model).items()},
                                tmp_path / "plain")
    stats = merge.merge_into_compressed(quantized_dir, {n: f.delta() for n, f in whole.factors.items()},
                                        tmp_path / "exact", masks=whole.update_masks_at(None))
    assert stats.mask_entries == stats.entries and stats.as_dict()["update_mass_dropped_fraction"] == 0.0
    assert stats.changed > 0
    assert (tmp_path / "exact" / "model.safetensors").read_bytes() == (tmp_path / "plain" / "model.safetensors").read_bytes()


def test_the_mask_of_a_kept_step_is_the_one_in_effect_then(make_trainer, tiny_random_dir: Path) -> None:
    trainer = make_trainer(tau=0.5, steps=5, mask="exact", reidentify_every=2)
    trainer.keep_mask_history = True  # what patch.py sets when held-out checks may keep an earlier step
    trainer.train()
    assert trainer.identified_at == [0, 2, 4] and trainer.mask_summary()["update_masks_held"] == 3
    by_step = dict(trainer.update_mask_history)
    # identification at t runs inside step t + 1, after the check at t: steps 1-2 use step 0's M_Q, 3-4 step 2's
    assert trainer.update_masks_at(2) is by_step[0] and trainer.update_masks_at(3) is by_step[2]
    assert trainer.update_masks_at(5) is by_step[4] is trainer.update_masks_at(None)
    latest_only = make_trainer(tau=0.5, steps=3, mask="exact", reidentify_every=2)
    latest_only.train()
    assert latest_only.mask_summary()["update_masks_held"] == 1
    assert latest_only.update_masks_at(3) is latest_only.update_masks
    with pytest.raises(PatchError, match="not kept"):
        latest_only.update_masks_at(2)


def test_exact_is_a_labelled_recipe_field() -> None:
    recipe = PatchRecipe.for_method("qresafe", mask="exact")
    assert recipe.label == "qresafe-maskexact" and PatchRecipe.from_yaml(recipe.to_yaml()) == recipe
    assert PatchRecipe.for_method("qresafe", "tuned", mask="exact").label == "qresafe-tuned-maskexact"
    assert PatchRecipe().mask == "block" and PatchRecipe().label == "qresafe"


@pytest.mark.parametrize(("args", "message"), [
    (["--quant", "bnb-nf4", "--bits", "4", "--mask", "exact"], "--mask exact needs an integer-grid format"),
    (["--quant", "qlora", "--bits", "4", "--calib", "direct", "--mask", "exact"], "--mask exact needs an integer-grid"),
    (["--quant", "aqlm", "--bits", "2", "--calib", "benign", "--mask", "exact"], "--mask exact needs an integer-grid"),
    (["--quant", "rtn", "--bits", "2", "--method", "lora-dpo", "--mask", "exact"], "--method lora-dpo has no mask"),
    (["--quant", "rtn", "--bits", "2", "--method", "sft", "--mask", "exact"], "--method sft has no mask"),
    (["--quant", "rtn", "--bits", "2", "--keep-safety-critical", "0.1", "--mask", "exact"], "has no mask"),
    (["--quant", "rtn", "--bits", "2", "--mask", "sparse"], "--mask"),
])
def test_refusals_are_one_line_and_write_nothing(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys, args,
                                                 message) -> None:
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), *args, "--data-dir", str(data_dir)])
    assert code == 1 and message in err and err.count("\n") == 1 and out == ""
    assert not home.exists() or not any(home.iterdir())


def test_patch_with_the_exact_mask_reports_it(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys) -> None:
    small = ["--patch-tier", "direct", "--n-tier-prompts", "6", "--n-harmful-prompts", "6", "--steps", "3",
             "--train-batch-size", "4", "--max-new-tokens", "8", "--lora-r", "4", "--learning-rate", "0.05"]
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "4", *small,
                              "--mask", "exact", "--json", "--data-dir", str(data_dir)])
    assert code == 0, err
    report = json.loads(out)
    assert report["label"].endswith("-maskexact") and report["hyperparameters"]["mask"] == "exact"
    assert report["masks"]["mask"] == "exact" and report["masks"]["update_masks_held"] == 1
    assert report["masks"]["update_mask_bytes"] == report["masks"]["update_mask_size"] > 0
    moved = report["merge"]
    assert moved["changed_outside_mask"] == 0 and moved["mask_changed"] == moved["changed"] > 0
    assert 0.0 < moved["mask_changed_fraction"] <= 1.0 and 0.0 < moved["update_mass_dropped_fraction"] < 1.0
    assert "exact mask" in report["saved_as"] and "of M_Q's" in err
    assert "mask: exact" in (Path(report["path"]) / "qresafe_patch.yaml").read_text()
