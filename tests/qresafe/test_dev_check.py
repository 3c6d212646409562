"""Held-out checks choose the patch's strength: the rule, the restored state, and the merged view."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qresafe_bench.qresafe import dev_check
from qresafe_bench.qresafe.config import PatchError, PatchRecipe
from qresafe_bench.qresafe.dev_check import CheckResult, CheckSets, DevCheckCallback


class _Factor:
    def __init__(self) -> None:
        self.a = torch.nn.Parameter(torch.zeros(2, 3))
        self.b = torch.nn.Parameter(torch.zeros(3, 2))


def test_the_best_admissible_checkpoint_is_kept_and_two_bad_checks_stop(monkeypatch) -> None:
    # step: (harmful refusal, benign refusal, utility); margin 0.05 against step 0
    script = {0: (0.2, 0.10, 0.90), 2: (0.5, 0.12, 0.88), 4: (0.6, 0.30, 0.90), 6: (0.9, 0.10, 0.50),
              8: (0.95, 0.10, 0.90)}
    monkeypatch.setattr(dev_check, "measure", lambda model, tok, sets, step: CheckResult(step, *script[step]))
    factor = _Factor()
    trainer = SimpleNamespace(model=torch.nn.Linear(1, 1))
    callback = DevCheckCallback(trainer, None, CheckSets((), (), ()), every=2, margin=0.05,
                                reference=CheckResult(-1, 0.9, 0.1, 0.9), factors={"layer": factor}, grid=None,
                                log=lambda _: None)
    control = SimpleNamespace(should_training_stop=False)
    callback.on_train_begin(None, None, control)
    for step in range(1, 9):
        with torch.no_grad():
            factor.a.fill_(step)  # the state after this step
        callback.on_step_end(None, SimpleNamespace(global_step=step, max_steps=8), control)
        if control.should_training_stop:
            break
    assert [r.step for r in callback.history] == [0, 2, 4, 6]  # 4 and 6 outside the guard: stopped at 6
    assert [r.admissible for r in callback.history] == [True, True, False, False]
    assert callback.best.step == 2 and control.should_training_stop
    callback.restore_best()
    assert torch.all(factor.a == 2)  # the factors are those of step 2
    assert callback.report()["kept_step"] == 2
    assert trainer.model.training  # the check put the model back in train mode


def test_no_improvement_keeps_step_zero(monkeypatch) -> None:
    script = {0: (0.5, 0.1, 0.9), 1: (0.4, 0.1, 0.9)}
    monkeypatch.setattr(dev_check, "measure", lambda model, tok, sets, step: CheckResult(step, *script[step]))
    factor = _Factor()
    callback = DevCheckCallback(SimpleNamespace(model=torch.nn.Linear(1, 1)), None, CheckSets((), (), ()), every=1,
                                margin=0.05, reference=CheckResult(-1, 0.9, 0.1, 0.9), factors={"layer": factor},
                                grid=None, log=lambda _: None)
    callback.on_train_begin(None, None, SimpleNamespace(should_training_stop=False))
    with torch.no_grad():
        factor.b.fill_(7)
    callback.on_step_end(None, SimpleNamespace(global_step=1, max_steps=1), SimpleNamespace(should_training_stop=False))
    callback.restore_best()
    assert callback.best.step == 0 and torch.all(factor.b == 0)


def test_training_stops_once_full_precision_refusal_is_restored(monkeypatch) -> None:
    # full precision refuses 50% of the harmful set and 30% of the benign one (harm-worded requests)
    script = {0: (0.0, 0.0, 0.9), 2: (0.2, 0.1, 0.9), 4: (0.47, 0.32, 0.9), 6: (0.9, 0.3, 0.9)}
    monkeypatch.setattr(dev_check, "measure", lambda model, tok, sets, step: CheckResult(step, *script[step]))
    callback = DevCheckCallback(SimpleNamespace(model=torch.nn.Linear(1, 1)), None, CheckSets((), (), ()), every=2,
                                margin=0.05, reference=CheckResult(-1, 0.5, 0.3, 0.9), factors={"layer": _Factor()},
                                grid=None, log=lambda _: None)
    control = SimpleNamespace(should_training_stop=False)
    callback.on_train_begin(None, None, control)
    for step in range(1, 7):
        callback.on_step_end(None, SimpleNamespace(global_step=step, max_steps=6), control)
        if control.should_training_stop:
            break
    # benign refusal may rise to the full-precision model's level (+ margin), not past it
    assert callback.best.step == 4 and callback.report()["restored"] and [r.step for r in callback.history] == [0, 2, 4]


def test_check_sets_are_held_out(data_dir) -> None:
    from qresafe_bench.harness.data import catalogue as public_data
    from qresafe_bench.harness.zoo import corpus as C
    from qresafe_bench.harness.zoo.utility import heldout_utility_items

    first_benign = dev_check.check_sets(data_dir, set()).benign[0]
    sets = dev_check.check_sets(data_dir, exclude={first_benign})
    assert first_benign not in sets.benign and len(sets.benign) == 200 and len(sets.harmful) >= 100
    evaluated = [r["prompt"] for r in public_data.advbench_prompts(data_dir)]
    evaluated += public_data.alpaca_instructions("val", data_dir)
    exact = {C.normalise(t) for t in evaluated}
    assert not [p for p in (*sets.harmful, *sets.benign) if C.normalise(p) in exact]
    test_items = {i["prompt"] for i in heldout_utility_items(300, 0)}
    assert not test_items & {i["prompt"] for i in sets.utility}


def test_check_options_are_validated() -> None:
    assert PatchRecipe(check_every=10).label == "qresafe-check10"
    with pytest.raises(PatchError, match="check-every"):
        PatchRecipe(check_every=-1)
    with pytest.raises(PatchError, match="no adapter"):
        PatchRecipe.for_method("dpo-full", check_every=5)


def test_grid_view_is_what_the_merge_saves(tiny_random_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    from qresafe_bench.harness.quantize.base import QuantRecipe
    from qresafe_bench.harness.quantize.llmc import quantize
    from qresafe_bench.qresafe import merge
    from qresafe_bench.qresafe.trainer import lora_factors

    quantized = tmp_path / "q"
    quantize(tiny_random_dir, QuantRecipe(method="rtn", bits=2, group_size=16, calib="none"), None, quantized,
             log=lambda _: None)
    model = AutoModelForCausalLM.from_pretrained(quantized, quantization_config=CompressedTensorsConfig(dequantize=True))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    torch.manual_seed(0)
    factors = lora_factors(model)
    with torch.no_grad():
        for f in factors.values():
            f.b.normal_(0, 0.5)  # a large update: many entries move a grid step or more
    before = {n: f.module.base_layer.weight.detach().clone() for n, f in factors.items()}
    view = dev_check.GridView(quantized, factors)
    with view.applied(model):
        seen = {n: f.module.base_layer.weight.detach().clone() for n, f in factors.items()}
    merge.merge_into_compressed(quantized, {n: f.delta() for n, f in factors.items()}, tmp_path / "merged")
    saved = merge.dequantized_weights(tmp_path / "merged", list(factors))
    assert all(torch.allclose(seen[n], saved[n]) for n in factors)
    assert any(not torch.equal(seen[n], before[n]) for n in factors)
    assert all(torch.equal(f.module.base_layer.weight, before[n]) for n, f in factors.items())  # restored
