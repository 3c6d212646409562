"""Patch settings: the paper's defaults, labels that name variants, one-line refusals."""

from __future__ import annotations

import pytest

from qresafe_bench.qresafe.config import PatchError, PatchRecipe, auto_lora_rank
from qresafe_bench.qresafe.trainer import QResafeConfig


def test_paper_defaults_and_labels() -> None:
    recipe = PatchRecipe()
    assert (recipe.tau, recipe.reidentify_every, recipe.beta) == (0.6, 1000, 0.01)
    assert recipe.label == "qresafe"
    assert PatchRecipe.for_method("qresafe", tau=0.2, steps=50).label == "qresafe-tau0.2-steps50"
    assert PatchRecipe.for_method("lora-dpo").label == "lora-dpo" and PatchRecipe.for_method("lora-dpo").tau == 1.0
    assert PatchRecipe.for_method("keep-critical", keep_fraction=0.05).label == "keep-critical-f0.05"
    assert PatchRecipe.from_yaml(recipe.to_yaml()) == recipe
    assert auto_lora_rank(4096, None) == 128 and auto_lora_rank(96, None) == 24 and auto_lora_rank(96, 8) == 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tau": 1.5}, "--tau must be in"),
    ({"steps": 0}, "--steps must be positive"),
    ({"n_tier_prompts": 0, "n_harmful_prompts": 0}, "at least one prompt"),
    ({"patch_tier": "spicy"}, "--patch-tier"),
])
def test_bad_recipes_are_refused(kwargs, message) -> None:
    with pytest.raises(PatchError, match=message):
        PatchRecipe.for_method("qresafe", **kwargs)
    with pytest.raises(PatchError, match="unknown --method"):
        PatchRecipe.for_method("rlhf")
    with pytest.raises(PatchError, match="lora-dpo is LoRA-DPO without a mask"):
        PatchRecipe.for_method("lora-dpo", tau=0.5)


def test_trainer_config_validates(tmp_path) -> None:
    config = QResafeConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    assert config.beta == 0.01 and config.tau == 0.6 and config.reidentify_every == 1000
    with pytest.raises(PatchError, match="--reidentify-every"):
        QResafeConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, reidentify_every=0)
    with pytest.raises(PatchError, match="--score-loss"):
        QResafeConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, score_loss="kl")


def test_rpo_alpha_is_off_by_default_and_maps_to_trl_losses(tmp_path) -> None:
    from qresafe_bench.qresafe.patch import trainer_config

    plain = trainer_config(PatchRecipe(), str(tmp_path), "cpu")
    assert plain.loss_type == ["sigmoid"] and plain.loss_weights is None  # the paper's pure DPO
    recipe = PatchRecipe.for_method("qresafe", rpo_alpha=0.5, check_every=2)
    assert recipe.label == "qresafe-check2-rpo0.5" and PatchRecipe.from_yaml(recipe.to_yaml()) == recipe
    rpo = trainer_config(recipe, str(tmp_path), "cpu")
    assert rpo.loss_type == ["sigmoid", "sft"] and rpo.loss_weights == [1.0, 0.5]
    assert trainer_config(PatchRecipe.for_method("sft"), str(tmp_path), "cpu").loss_type == ["sft"]
    with pytest.raises(PatchError, match="--rpo-alpha must be >= 0"):
        PatchRecipe.for_method("qresafe", rpo_alpha=-1.0)
    with pytest.raises(PatchError, match="--method sft has no DPO loss"):
        PatchRecipe.for_method("sft", rpo_alpha=1.0)
