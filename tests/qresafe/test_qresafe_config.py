"""Patch settings: the paper's recipe by default, named departures, labels that name variants, one-line refusals."""

from __future__ import annotations

import pytest

from qresafe_bench.qresafe.config import PatchError, PatchRecipe, auto_lora_rank
from qresafe_bench.qresafe.trainer import QResafeConfig


def test_paper_recipe_is_the_default_and_labels() -> None:
    recipe = PatchRecipe()
    assert recipe.recipe == "paper" and PatchRecipe.for_method("qresafe") == recipe
    assert (recipe.tau, recipe.reidentify_every, recipe.beta) == (0.6, 1000, 0.01)
    assert (recipe.learning_rate, recipe.epochs, recipe.steps) == (5e-6, 1.0, None)
    assert (recipe.patch_tier, recipe.n_tier_prompts, recipe.n_harmful_prompts) == ("variant", None, 0)
    assert (recipe.check_every, recipe.rpo_alpha, recipe.lr_scheduler) == (0, 0.0, "linear")
    assert recipe.label == "qresafe"
    assert PatchRecipe.for_method("qresafe", tau=0.2, steps=50).label == "qresafe-tau0.2-steps50"
    assert PatchRecipe.for_method("lora-dpo").label == "lora-dpo" and PatchRecipe.for_method("lora-dpo").tau == 1.0
    assert PatchRecipe.for_method("keep-critical", keep_fraction=0.05).label == "keep-critical-f0.05"
    assert PatchRecipe.from_yaml(recipe.to_yaml()) == recipe
    assert auto_lora_rank(4096, None) == 128 and auto_lora_rank(96, None) == 24 and auto_lora_rank(96, 8) == 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tau": 1.5}, "--tau must be in"),
    ({"steps": 0}, "--steps and --epochs must be positive"),
    ({"epochs": 0.0}, "--steps and --epochs must be positive"),
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

    plain = trainer_config(PatchRecipe(), str(tmp_path), "cpu", 64)
    assert plain.loss_type == ["sigmoid"] and plain.loss_weights is None  # the paper's pure DPO
    recipe = PatchRecipe.for_method("qresafe", rpo_alpha=0.5, check_every=2)
    assert recipe.label == "qresafe-check2-rpo0.5" and PatchRecipe.from_yaml(recipe.to_yaml()) == recipe
    rpo = trainer_config(recipe, str(tmp_path), "cpu", 64)
    assert rpo.loss_type == ["sigmoid", "sft"] and rpo.loss_weights == [1.0, 0.5]
    assert trainer_config(PatchRecipe.for_method("sft"), str(tmp_path), "cpu", 64).loss_type == ["sft"]
    with pytest.raises(PatchError, match="--rpo-alpha must be >= 0"):
        PatchRecipe.for_method("qresafe", rpo_alpha=-1.0)
    with pytest.raises(PatchError, match="--method sft has no DPO loss"):
        PatchRecipe.for_method("sft", rpo_alpha=1.0)


def test_named_recipes_are_departures_with_their_own_labels(tmp_path) -> None:
    from qresafe_bench.qresafe.patch import planned_steps, trainer_config

    tuned = PatchRecipe.for_method("qresafe", "tuned")
    assert tuned.label == "qresafe-tuned" and PatchRecipe.from_yaml(tuned.to_yaml()) == tuned
    assert (tuned.learning_rate, tuned.steps, tuned.epochs, tuned.check_every, tuned.rpo_alpha) == (5e-4, 100, None, 2,
                                                                                                    1.0)
    assert PatchRecipe.for_method("qresafe", "tuned", tau=0.2).label == "qresafe-tuned-tau0.2"
    assert PatchRecipe.for_method("sft", "tuned").label == "sft-tuned"
    with pytest.raises(PatchError, match="unknown --recipe 'fast'"):
        PatchRecipe.for_method("qresafe", "fast")
    # the paper's one epoch: ceil(pairs / batch) steps, on a linear schedule; steps replace epochs
    paper = trainer_config(PatchRecipe(), str(tmp_path), "cpu", 121)
    assert paper.max_steps == 16 and paper.learning_rate == 5e-6 and paper.lr_scheduler_type.value == "linear"
    assert planned_steps(PatchRecipe.for_method("qresafe", epochs=2.0), 121) == 32
    assert planned_steps(PatchRecipe.for_method("qresafe", steps=7), 121) == 7
    assert trainer_config(tuned, str(tmp_path), "cpu", 121).max_steps == 100


def test_the_patch_tier_follows_the_variant() -> None:
    recipe = PatchRecipe()
    assert [recipe.tier_for(c) for c in ("benign", "indirect", "direct", "none")] == ["benign", "indirect", "direct",
                                                                                      "benign"]
    assert PatchRecipe.for_method("qresafe", patch_tier="direct").tier_for("benign") == "direct"


def test_keep_critical_on_awq_is_refused_before_any_pair_is_generated() -> None:
    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.qresafe.patch import PatchRequest, check_request

    recipe = PatchRecipe.for_method("keep-critical", keep_fraction=0.1)
    with pytest.raises(PatchError, match="awq"):
        check_request(PatchRequest(spec=VariantSpec("ref-tiny", "awq", 4, "benign"), recipe=recipe))
    check_request(PatchRequest(spec=VariantSpec("ref-tiny", "gptq", 4, "benign"), recipe=recipe))
