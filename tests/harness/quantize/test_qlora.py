"""QLoRA: NF4 base + LoRA fine-tune on calibration conversations (harness/quantize/qlora.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.data.calibration import CalibrationSet
from qresafe_bench.harness.quantize import _train, qlora
from qresafe_bench.harness.quantize.base import QuantError, QuantRecipe, check_supported
from qresafe_bench.harness.quantize.bnb import load_quantized

ANSWERS = ("The sea is wide and blue.", "A bicycle turns pedals into motion.", "Red, green and blue.",
           "Waves roll over the sand.")


def calib() -> CalibrationSet:
    prompts = ("Write a short poem about the sea.", "Explain how a bicycle works.", "List three colours.",
               "Describe the beach.")
    convs = [({"role": "user", "content": p}, {"role": "assistant", "content": a})
             for p, a in zip(prompts, ANSWERS, strict=True)]
    convs += [({"role": "system", "content": "Be brief."}, {"role": "user", "content": p},
               {"role": "assistant", "content": a}) for p, a in zip(prompts, ANSWERS, strict=True)]
    return CalibrationSet("direct", tuple(convs))


def recipe(**kw) -> QuantRecipe:
    return QuantRecipe(**{"method": "qlora", "bits": 4, "train_steps": 5, "learning_rate": 1e-2, "lora_r": 4,
                          "lora_alpha": 8, "max_seq_length": 128, **kw})


def test_assistant_only_labels(tiny_random_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_random_dir)
    examples = _train.assistant_examples(tok, calib().conversations, 256)
    assert len(examples) == 8
    for ex, answer in zip(examples, ANSWERS * 2, strict=True):
        learned = tok.decode([t for t in ex.labels if t != -100])
        assert learned.strip() == answer  # the answer and the template's newline, nothing of the prompt
        assert ex.labels[0] == -100
    batch = _train.collate(examples[:3], _train.pad_id(tok))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert ((batch["attention_mask"] == 0) <= (batch["labels"] == -100)).all()  # pads never learned

    cut = _train.assistant_examples(tok, calib().conversations, 40)  # cut inside the answers: fewer labels
    assert all(len(e.input_ids) <= 40 for e in cut)
    with pytest.raises(QuantError, match="no training conversation"):
        _train.assistant_examples(tok, calib().conversations, 5)  # every answer starts beyond the cut


def test_qlora_trains_and_saves(tiny_random_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lines: list[str] = []
    out = tmp_path / "qlora"
    qlora.quantize(tiny_random_dir, recipe(), calib(), out, lines.append)
    assert any("step 5/5" in line for line in lines)
    assert not list(tmp_path.glob(".train-*"))  # the training checkpoint (kept every step here) served

    # The saved base is the untouched NF4 base: the same packed weights as a fresh NF4 load.
    fresh = load_quantized(tiny_random_dir, "bnb-nf4").state_dict()
    model = AutoModelForCausalLM.from_pretrained(out)
    saved = model.state_dict()
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert not any("lora" in k for k in saved)
    for key in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"):
        assert torch.equal(saved[key], fresh[key])

    # The adapter learned something: every LoRA B moved off its zero initialisation.
    peft = PeftModel.from_pretrained(model, out / "adapter")
    lora_b = {k: v for k, v in peft.state_dict().items() if "lora_B" in k}
    assert len(lora_b) == 7  # q k v o gate up down of the single layer
    assert all(torch.any(v) for v in lora_b.values())

    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "List three colours."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = peft.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 4


def test_qlora_is_deterministic(tiny_random_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    for name in ("a", "b"):
        qlora.quantize(tiny_random_dir, recipe(train_steps=2), calib(), tmp_path / name, lambda _: None)
    a = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_zero_gradient_guard_raises(tiny_random_dir: Path) -> None:
    model = qlora.add_adapter(load_quantized(tiny_random_dir, "bnb-nf4"), recipe())
    with pytest.raises(QuantError, match="no trainable LoRA|gradients are zero"):
        qlora.check_lora_gradients(model)  # no backward yet: no gradients at all
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    with pytest.raises(QuantError, match="gradients are zero"):
        qlora.check_lora_gradients(model)
    with pytest.raises(QuantError, match="still all zero"):
        qlora.check_lora_moved(model)

    # A real backward gives LoRA B a gradient, and the guard lets it through.
    model.train()
    ids = torch.tensor([[3, 4, 5, 6]])
    model(input_ids=ids, labels=ids).loss.backward()
    qlora.check_lora_gradients(model)


def test_repacked_weights_refused(tiny_random_dir: Path) -> None:
    model = qlora.add_adapter(load_quantized(tiny_random_dir, "bnb-nf4"), recipe())
    qlora.check_not_repacked(model)
    # What bitsandbytes does on an AVX512-BF16 CPU after a no-grad eval forward (this machine may lack it).
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    q_proj.weight.quant_state.packing_format_for_cpu = True
    with pytest.raises(QuantError, match="repacked"):
        qlora.check_not_repacked(model)


def test_qlora_only_4_bit() -> None:
    assert check_supported("qlora", 4).name == "qlora"
    for bits in (8, 3, 2):
        with pytest.raises(QuantError, match="does not support"):
            check_supported("qlora", bits)
