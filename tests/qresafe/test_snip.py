"""SNIP scores, the per-layer top-tau mask and its decomposition onto the LoRA factors (qresafe/snip.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qresafe_bench.qresafe import snip


def _batches(tokenizer, n: int = 3):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from qresafe_bench.qresafe.pairs import PatchPrompt, PreferencePair, tokenize_pairs

    pairs = [PreferencePair(PatchPrompt(({"role": "user", "content": f"List colour {i}."},), "benign"),
                            "Red and blue.", f"Sure, colour {i}.") for i in range(n)]
    examples = tokenize_pairs(tokenizer, pairs, 64)
    collate = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    return [collate([e]) for e in examples]


@pytest.mark.parametrize("loss", ["dpo", "nll"])
def test_hooked_gradient_equals_autograd(tiny_random_dir: Path, loss: str) -> None:
    """|W * dL/dQ| from the activation hooks equals the same thing from parameter gradients."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_random_dir)
    batches = _batches(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_random_dir)
    layers = snip.adapted_layers(model, ["q_proj", "down_proj"])
    weights = {n: m.weight.detach().clone() for n, m in layers.items()}
    torch.manual_seed(1)
    full_precision = {n: w + 0.01 * torch.randn_like(w) for n, w in weights.items()}  # W != Q, as in the patch
    scores = snip.safety_scores(model, batches, layers, full_precision, loss=loss, beta=0.5)

    expected = {n: torch.zeros_like(w) for n, w in weights.items()}
    for batch in batches:
        model.zero_grad()
        for module in layers.values():
            module.weight.requires_grad_(True)
        snip.safety_loss(model, batch, loss=loss, beta=0.5).backward()
        for n, module in layers.items():
            expected[n] += (full_precision[n] * module.weight.grad).abs()
    for n in layers:
        assert torch.allclose(scores[n], expected[n] / len(batches), rtol=1e-4, atol=1e-9)
        assert scores[n].sum() > 0

    # Through a LoRA wrapper the hooks see the effective weight's gradient; with B = 0 it is the same.
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_random_dir),
                          LoraConfig(r=2, target_modules=["q_proj", "down_proj"], task_type="CAUSAL_LM"))
    wrapped = snip.adapted_layers(peft, ["q_proj", "down_proj"])
    assert set(wrapped) == set(layers)
    if loss == "nll":  # DPO through the adapter has reference = adapter off = the same weights here
        lora_scores = snip.safety_scores(peft, batches, wrapped, full_precision, loss=loss, beta=0.5)
        for n in layers:
            assert torch.allclose(lora_scores[n], scores[n], rtol=1e-4, atol=1e-9)


def test_top_fraction_counts_and_order() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 0.7]])
    assert snip.top_fraction(scores, 0.5).tolist() == [[False, True, False], [True, False, True]]
    assert not snip.top_fraction(scores, 0.0).any()
    assert snip.top_fraction(scores, 1.0).all()
    assert int(snip.top_fraction(torch.rand(40, 30), 0.6).sum()) == 720


def test_decomposition_keeps_tau_of_each_factor() -> None:
    torch.manual_seed(0)
    scores = torch.rand(40, 30)
    scores[5] += 10.0  # a row that carries most of the safety mass must be trainable in B
    scores[:, 7] += 10.0  # and a column of it in A
    for tau in (0.2, 0.6):
        mask_q = snip.top_fraction(scores, tau)
        mask_a, mask_b = snip.decompose(mask_q, scores, rank=4, tau=tau)
        assert mask_a.shape == (4, 30) and mask_b.shape == (40, 4)
        assert int(mask_b[:, 0].sum()) == round(tau * 40) and int(mask_a[0].sum()) == round(tau * 30)
        assert bool(mask_b[5].all()) and bool(mask_a[:, 7].all())
        assert (mask_a == mask_a[:1]).all() and (mask_b == mask_b[:, :1]).all()  # whole columns / rows
        assert 0.0 < snip.block_coverage(mask_q, scores, mask_a, mask_b) <= 1.0
    ones_a, ones_b = snip.decompose(snip.top_fraction(scores, 1.0), scores, 4, 1.0)
    assert ones_a.all() and ones_b.all()
    zero_a, zero_b = snip.decompose(snip.top_fraction(scores, 0.0), scores, 4, 0.0)
    assert not zero_a.any() and not zero_b.any()


def test_a_layer_the_gradient_never_reaches_fails_loudly(tiny_random_dir: Path) -> None:
    """A layer whose output stops carrying gradients (as bitsandbytes 4-bit layers do once an eval-mode
    generation repacks them on some CPUs) would get all-zero scores and a mask chosen by position: refused."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_random_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_random_dir)
    layers = snip.adapted_layers(model, ["q_proj", "down_proj"])
    full_precision = {n: m.weight.detach().clone() for n, m in layers.items()}
    name, dead = next(iter(layers.items()))
    dead.register_forward_hook(lambda _m, _a, out: out.detach())  # the forced path: no gradient past this layer
    with pytest.raises(RuntimeError, match="no gradient reached|all-zero SNIP scores"):
        snip.safety_scores(model, _batches(tokenizer), layers, full_precision, loss="dpo", beta=0.5)


@pytest.mark.parametrize("reentrant", [False, True])
def test_scores_are_the_same_under_gradient_checkpointing(tiny_random_dir: Path, reentrant: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpointing runs each layer again inside the backward: reentrant checkpointing differentiates only the
    recomputed output, non-reentrant only the original one; either way each layer's gradient counts once, and
    is added to its total as it arrives (none is left waiting for the end of the batch, which would hold every
    layer's dL/dQ at once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    left_waiting: list[int] = []
    end_batch = snip._GradientTotals.end_batch

    def recording_end_batch(self) -> None:
        left_waiting.append(len(self._pending))
        end_batch(self)

    monkeypatch.setattr(snip._GradientTotals, "end_batch", recording_end_batch)
    tokenizer = AutoTokenizer.from_pretrained(tiny_random_dir)
    batches = _batches(tokenizer)
    scores = {}
    for checkpointing in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_random_dir).train()  # checkpointing acts in training mode
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        layers = snip.adapted_layers(model, ["q_proj", "down_proj"])
        full_precision = {n: m.weight.detach().clone() for n, m in layers.items()}
        scores[checkpointing] = snip.safety_scores(model, batches, layers, full_precision, loss="dpo", beta=0.5)
    for name, plain in scores[False].items():
        torch.testing.assert_close(scores[True][name], plain, rtol=1e-6, atol=0.0)
    assert left_waiting == [0] * (2 * len(batches))


def test_a_layer_used_twice_sums_its_gradient_before_the_absolute_value() -> None:
    """dL/dQ of a layer applied twice in one forward is the sum over both uses; |.| comes after the sum."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4, bias=False)
    totals = snip._GradientTotals()
    handle = layer.register_forward_hook(totals.hook("layer"))
    x = torch.randn(3, 4)
    loss = (layer(torch.tanh(layer(x))) ** 2).sum()
    totals.in_backward = True
    loss.backward()
    totals.end_batch()
    handle.remove()
    torch.testing.assert_close(totals.totals["layer"], layer.weight.grad.abs(), rtol=1e-6, atol=1e-7)


def test_full_precision_weights_are_read_per_layer_in_their_own_dtype(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = {"model.a.weight": torch.randn(4, 3).to(torch.bfloat16), "model.b.weight": torch.randn(2, 2)}
    save_file({"model.a.weight": weights["model.a.weight"]}, str(tmp_path / "model-00001.safetensors"))
    save_file({"model.b.weight": weights["model.b.weight"]}, str(tmp_path / "model-00002.safetensors"))
    loaded = snip.load_full_precision(tmp_path, ["model.a", "model.b"])
    assert isinstance(loaded, snip.LazyWeights) and sorted(loaded) == ["model.a", "model.b"]
    assert loaded["model.a"].dtype == torch.bfloat16  # not widened to fp32: the scores widen one layer at a time
    assert torch.equal(loaded["model.a"], weights["model.a.weight"]) and torch.equal(loaded["model.b"],
                                                                                    weights["model.b.weight"])
    with pytest.raises(ValueError, match="model.c"):
        snip.load_full_precision(tmp_path, ["model.a", "model.c"])


def test_scores_equal_the_per_batch_sum_of_the_previous_formula(tiny_random_dir: Path) -> None:
    """The buffer holds sum_b |dL_b/dQ| and W multiplies it once at the end: equal to sum_b |W * dL_b/dQ| up to
    fp32 rounding, and W given in bf16 is widened exactly, as each layer's turn comes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_random_dir)
    batches = _batches(tokenizer, n=4)
    model = AutoModelForCausalLM.from_pretrained(tiny_random_dir)
    layers = snip.adapted_layers(model, ["q_proj", "down_proj"])
    torch.manual_seed(2)
    full_precision = {n: (m.weight.detach() + 0.01 * torch.randn_like(m.weight)).to(torch.bfloat16)
                      for n, m in layers.items()}
    scores = snip.safety_scores(model, batches, layers, full_precision, loss="dpo", beta=0.5)
    for module in layers.values():
        module.weight.requires_grad_(True)
    expected = {n: torch.zeros_like(m.weight) for n, m in layers.items()}
    for batch in batches:
        model.zero_grad()
        snip.safety_loss(model, batch, loss="dpo", beta=0.5).backward()
        for n, module in layers.items():
            expected[n] += (full_precision[n].float() * module.weight.grad).abs()
    for n in layers:
        torch.testing.assert_close(scores[n], expected[n] / len(batches), rtol=1e-5, atol=1e-12)
