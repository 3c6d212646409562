"""MaskedDPOTrainer: the masked update rule, its invariants, re-identification at K, the 4-bit guard."""

from __future__ import annotations

import pytest
import torch


def _lora_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}


def test_masked_entries_are_bit_identical_under_adamw(make_trainer) -> None:
    # High learning rate and weight decay: AdamW would move every entry it holds if the rule leaked.
    trainer = make_trainer(tau=0.5, steps=6, learning_rate=5e-2, weight_decay=0.5)
    trainer.identify_masks()  # step 0's identification, done here so the frozen values can be read first
    before = {name: (f.a.detach().clone(), f.b.detach().clone()) for name, f in trainer.factors.items()}
    trainer.train()
    assert trainer.identified_at == [0]  # K = 1000 > 6 steps: no re-identification
    moved_inside = 0
    for name, factor in trainer.factors.items():
        mask_a, mask_b = trainer.masks[name]
        assert 0 < int(mask_a.sum()) < mask_a.numel() and 0 < int(mask_b.sum()) < mask_b.numel()
        assert torch.equal(factor.a[~mask_a], before[name][0][~mask_a])
        assert torch.equal(factor.b[~mask_b], before[name][1][~mask_b])
        assert torch.equal(factor.a[~mask_a], torch.zeros_like(factor.a[~mask_a]))  # frozen columns start at 0
        moved_inside += int((factor.b[mask_b] != before[name][1][mask_b]).sum())
        # the update lives in the allowed rows x columns block: s*BA is zero outside it
        block = mask_b[:, :1] & mask_a[:1, :]
        assert torch.equal(factor.delta()[~block], torch.zeros_like(factor.delta()[~block]))
    assert moved_inside > 0  # and the allowed entries did learn


def test_tau_zero_changes_nothing(make_trainer, tiny_random_dir) -> None:
    trainer = make_trainer(tau=0.0, steps=3, learning_rate=5e-2)
    trainer.train()
    assert all(not torch.any(f.b) for f in trainer.factors.values())  # B stays zero: the patch is a no-op
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        patched = trainer.model(input_ids=ids).logits
        with trainer.model.disable_adapter():
            original = trainer.model(input_ids=ids).logits
    assert torch.equal(patched, original)


def test_tau_one_equals_plain_lora_dpo(make_trainer) -> None:
    masked = make_trainer(tau=1.0, steps=4)
    masked.train()
    plain = make_trainer(steps=4, plain=True)
    plain.train()
    a, b = _lora_state(masked), _lora_state(plain)
    assert a.keys() == b.keys() and len(a) == 6  # A and B of 3 targets in the one layer
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(torch.any(v) for k, v in a.items() if "lora_B" in k)  # and they trained (not trivially equal)


def test_reidentification_happens_every_k_steps(make_trainer) -> None:
    trainer = make_trainer(tau=0.5, steps=5, reidentify_every=2)
    trainer.train()
    assert trainer.identified_at == [0, 2, 4]
    assert trainer.mask_summary()["identified_at_steps"] == [0, 2, 4]
    once = make_trainer(tau=0.5, steps=3, reidentify_every=3)
    once.train()
    assert once.identified_at == [0]


def test_trainable_fraction_follows_tau(make_trainer) -> None:
    for tau in (0.25, 0.75):
        trainer = make_trainer(tau=tau, steps=1)
        trainer.identify_masks()
        summary = trainer.mask_summary()
        assert summary["trainable_fraction"] == pytest.approx(tau, abs=0.05)


def test_four_bit_base_guard(make_trainer, tiny_random_dir) -> None:
    from qresafe_bench.harness.quantize.base import QuantError
    from qresafe_bench.harness.quantize.bnb import load_quantized

    trainer = make_trainer(tau=0.5, steps=2, model=load_quantized(tiny_random_dir, "bnb-nf4"))
    trainer.train()  # trains through the 4-bit base: the guard checks the first step's B gradients
    assert any(torch.any(f.b) for f in trainer.factors.values())

    repacked = make_trainer(tau=0.5, steps=2, model=load_quantized(tiny_random_dir, "bnb-nf4"))
    layer = next(iter(repacked.factors.values())).module.base_layer
    layer.weight.quant_state.packing_format_for_cpu = True  # what a no-grad eval forward does on AVX512-BF16
    with pytest.raises(QuantError, match="repacked"):
        repacked.train()


def test_rpo_term_changes_the_update_and_keeps_the_mask(make_trainer) -> None:
    # DPO + alpha * NLL(y_w) through TRL's own combined loss: the masked rule still holds, and the term is live
    plain = make_trainer(tau=0.5, steps=3)
    plain.train()
    rpo = make_trainer(tau=0.5, steps=3, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0])
    rpo.identify_masks()
    before = {name: (f.a.detach().clone(), f.b.detach().clone()) for name, f in rpo.factors.items()}
    rpo.train()
    for name, factor in rpo.factors.items():
        mask_a, mask_b = rpo.masks[name]
        assert torch.equal(factor.a[~mask_a], before[name][0][~mask_a])
        assert torch.equal(factor.b[~mask_b], before[name][1][~mask_b])
    a, b = _lora_state(plain), _lora_state(rpo)
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


def test_device_decides_dtype_and_checkpointing() -> None:
    from qresafe_bench.qresafe.trainer import device_precision

    bf16_gpu = device_precision("cuda", bf16_supported=True)
    assert bf16_gpu.autocast_dtype == torch.bfloat16 and bf16_gpu.gradient_checkpointing
    older_gpu = device_precision("cuda", bf16_supported=False)  # no fp16 fallback: it would need a grad scaler
    assert older_gpu.autocast_dtype is None and older_gpu.gradient_checkpointing
    for bf16_supported in (True, False):
        cpu = device_precision("cpu", bf16_supported=bf16_supported)
        assert cpu.autocast_dtype is None and not cpu.gradient_checkpointing


def test_config_applies_the_device_choice(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU the caller's fp32 settings stand; on CUDA the device's choice replaces them (patch.py passes
    bf16=False for every device), with non-reentrant checkpointing unless the caller chose otherwise."""
    from qresafe_bench.qresafe.trainer import QResafeConfig

    config = QResafeConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    assert not config.bf16 and not config.fp16 and not config.gradient_checkpointing

    # the CUDA branch, on this CPU machine: what `_apply_device_precision` writes before the GPU checks run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16_supported, kwargs, reentrant in ((True, None, False), (False, {"use_reentrant": True}, True)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, s=bf16_supported: s)
        config.use_cpu, config.bf16, config.fp16 = False, False, not bf16_supported
        config.gradient_checkpointing, config.gradient_checkpointing_kwargs = False, kwargs
        config._apply_device_precision()
        assert config.bf16 is bf16_supported and not config.fp16
        assert config.gradient_checkpointing and config.gradient_checkpointing_kwargs == {"use_reentrant": reentrant}


def test_report_states_the_effective_precision(make_trainer) -> None:
    """CPU default: fp32, no checkpointing. The CUDA path's mechanics (bf16 autocast, non-reentrant
    checkpointing with PEFT's input grads, SNIP through the recomputed layers), asked for on CPU, train
    with the masked rule intact, and the report says what ran."""
    trainer = make_trainer(tau=0.5, steps=1)
    trainer.train()
    summary = trainer.mask_summary()
    assert summary["train_dtype"] == "float32" and summary["gradient_checkpointing"] is False

    low = make_trainer(tau=0.5, steps=2, learning_rate=5e-2, bf16=True, gradient_checkpointing=True,
                       gradient_checkpointing_kwargs={"use_reentrant": False})
    seen: list[torch.dtype] = []
    layer = next(iter(low.factors.values())).module.base_layer
    layer.register_forward_hook(lambda _m, _a, out: seen.append(out.dtype))
    low.identify_masks()
    before = {name: (f.a.detach().clone(), f.b.detach().clone()) for name, f in low.factors.items()}
    low.train()
    summary = low.mask_summary()
    assert summary["train_dtype"] == "bfloat16" and summary["gradient_checkpointing"] is True
    assert torch.bfloat16 in seen  # the training forward ran under autocast
    for name, factor in low.factors.items():
        assert factor.a.dtype == factor.b.dtype == torch.float32  # fp32 master weights under autocast
        mask_a, mask_b = low.masks[name]
        assert torch.equal(factor.a[~mask_a], before[name][0][~mask_a])
        assert torch.equal(factor.b[~mask_b], before[name][1][~mask_b])
    assert any(torch.any(f.b) for f in low.factors.values())  # gradients reached B through the checkpoints
