"""QLoRA (Dettmers et al. 2023): a LoRA adapter fine-tuned on top of a frozen NF4 base.

Who does what: bitsandbytes quantizes the base to NF4 (through bnb.py, the same load as the
`bnb-nf4` variant: block size 64, fp32 compute, no double quantization); PEFT adds the LoRA adapter
(r and alpha from the recipe, on the attention and MLP projections); _train.py runs plain AdamW on the
calibration conversations with the loss on the assistant tokens only. In the Q-resafe setting the
calibration tier *is* the fine-tuning data, so a `direct` or `indirect` tier is a fine-tuning attack
carried out while quantizing.

Saved: the NF4 base, serialized by bitsandbytes, in `out_dir` (the adapter is *not* merged: merging
into 4-bit weights would requantize them and lose what LoRA learned), and the adapter in
`out_dir/adapter/` (PEFT format). Load with `AutoModelForCausalLM.from_pretrained(out_dir)` then
`PeftModel.from_pretrained(model, out_dir / "adapter")`; lm-eval's hf model takes `peft=<adapter>`.

Departures from the paper: no double quantization and no paged optimizers (memory measures for big
GPUs, no effect on what is learned); no `prepare_model_for_kbit_training`: it upcasts every
non-quantized weight to fp32, which would make the saved base differ from the `bnb-nf4` variant, and
turns on gradient checkpointing, a memory measure; the LoRA weights are fp32 anyway (PEFT upcasts
adapters) and the 4-bit matmuls compute in fp32 (bnb.py).

Known trap, guarded here: on CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights into an
inference layout on the first forward that is in eval mode without gradients, and after that the
matmul bypasses autograd, so training loses gradients with only a warning. We never run such a forward
before training (train() puts the model in training mode first), refuse a model whose weights are
already repacked, and check after the first backward that the LoRA B matrices (zero at
initialisation) receive a gradient, and after training that they moved; otherwise QuantError.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from . import _train
from .base import QuantError, QuantRecipe, check_supported

# Llama/Mistral/Qwen/Gemma names for the attention and MLP projections (the QLoRA paper adapts all
# linear layers of the decoder; lm_head stays as it is).
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def quantize(base_dir: Path, recipe: QuantRecipe, calib, out_dir: Path, log: Callable[[str], None]) -> None:
    from transformers import AutoTokenizer

    from .bnb import load_quantized

    check_supported("qlora", recipe.bits)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    examples = _train.assistant_examples(tokenizer, calib.conversations, recipe.max_seq_length, log)
    model = load_quantized(base_dir, "bnb-nf4", recipe.group_size)
    peft_model = add_adapter(model, recipe)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    log(f"qlora: NF4 base, LoRA r={recipe.lora_r} alpha={recipe.lora_alpha} ({trainable} trainable params), "
        f"{len(examples)} conversations, {recipe.train_steps} steps at lr {recipe.learning_rate}")
    check_not_repacked(peft_model)
    checkpoint = _train.checkpoint_dir_for(out_dir, base_dir, recipe.to_yaml(), examples)
    _train.train(peft_model, examples, pad=_train.pad_id(tokenizer), steps=recipe.train_steps,
                 lr=recipe.learning_rate, seed=recipe.seed, log=log, batch_size=recipe.train_batch_size,
                 check_gradients=lambda step: check_lora_gradients(peft_model) if step == 0 else None,
                 checkpoint_dir=checkpoint)
    check_lora_moved(peft_model)

    adapter_dir = out_dir / "adapter"
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    peft_model.save_pretrained(adapter_dir)
    base = peft_model.unload()  # strips the LoRA layers without merging them into the 4-bit weights
    base.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _train.remove_checkpoint(checkpoint)


def add_adapter(model, recipe: QuantRecipe):
    """The PEFT LoRA model over `model` (only the adapter is trainable), seeded by the recipe."""
    import torch
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in TARGET_MODULES if t in present]
    if not targets:
        raise QuantError(f"qlora: none of {', '.join(TARGET_MODULES)} in this architecture; "
                         "add its projection names to TARGET_MODULES")
    torch.manual_seed(recipe.seed)  # LoRA A is randomly initialised
    config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=0.0, bias="none",
                        target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _lora_b(model) -> list:
    return [p for name, p in model.named_parameters() if "lora_B" in name and p.requires_grad]


def check_not_repacked(model) -> None:
    """Refuse 4-bit weights that bitsandbytes has already repacked for CPU inference."""
    for name, module in model.named_modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            raise QuantError(f"qlora: {name} was repacked for CPU inference by an earlier no-grad forward "
                             "(bitsandbytes, AVX512-BF16); training it would lose gradients; reload it")


def check_lora_gradients(model) -> None:
    """After the first backward: some LoRA B must have a non-zero, finite gradient."""
    import torch

    grads = [p.grad for p in _lora_b(model)]
    if not grads:
        raise QuantError("qlora: the model has no trainable LoRA B matrices")
    if all(g is None or not torch.any(g) for g in grads):
        raise QuantError("qlora: all LoRA gradients are zero after the first backward (bitsandbytes lost "
                         "the autograd path through the 4-bit weights?); refusing to train silently")
    if any(g is not None and not torch.isfinite(g).all() for g in grads):
        raise QuantError("qlora: non-finite LoRA gradients after the first backward")


def check_lora_moved(model) -> None:
    """After training: the LoRA B matrices, zero at initialisation, must have moved."""
    import torch

    if not any(torch.any(p.detach()) for p in _lora_b(model)):
        raise QuantError("qlora: LoRA B matrices are still all zero after training: nothing was learned")
