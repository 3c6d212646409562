"""Q-resafe without fine-tuning: keep the safety-critical weights in 16-bit, quantize the rest.

    qresafe-bench patch --model ref-tiny --quant rtn --bits 4 --keep-safety-critical 0.01

The paper's training-free variant: SNIP scores on the *full-precision* model (the same pairs and the
same loss as the patch: y_w from the full-precision model, y_l from the quantized one; the DPO gradient
at the reference point, or the NLL of y_w) pick the top `fraction` of each quantized layer's weights;
those keep their full-precision values and the rest keep the quantized ones (dense quantized + sparse
16-bit, as in SpQR-style outlier formats).

Which formats: integer grids (rtn, gptq, awq, llm-qat), whose dequantized weights are read exactly from
the compressed-tensors file (merge.dequantized_weights). The quantized part is the existing variant
itself: for RTN that is "quantize the rest" exactly (min-max scales of the whole group, as the paper's
RTN baseline; scales that exclude the kept weights would be a further improvement); for GPTQ/AWQ it keeps
their error compensation as computed with all weights present. bitsandbytes, aqlm and qlora are refused
(check_request in patch.py): their dequantized values are not a per-entry grid we can mix with.

Saved as: a dense Hugging Face checkpoint in the base model's dtype whose weights are exactly
"dequantized Q, with W at the kept positions" (what a dense + sparse kernel computes), which every
loader and lm-eval's `hf` model read as is; plus `safety_critical.safetensors`, the sparse part in its
compact form (flat int64 indices + 16-bit values per layer), and the storage it would cost in the report.
We do not ship a dense+sparse inference kernel: on CPU the evaluation runs the dense equivalent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..harness.models.resolved import ResolvedModel
from .config import PatchError
from .pairs import PreferencePair, tokenize_pairs


def build_keep_critical(request, base: ResolvedModel, quantized: ResolvedModel, pairs: list[PreferencePair],
                        out_dir: Path, *, log: Callable[[str], None]) -> dict:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from . import merge, snip

    recipe = request.recipe
    fraction = recipe.keep_fraction
    started = time.perf_counter()
    quantized_weights = merge.dequantized_weights(Path(quantized.location))
    tokenizer = AutoTokenizer.from_pretrained(base.location)
    model = AutoModelForCausalLM.from_pretrained(base.location, dtype="auto", use_safetensors=True)
    model.to(request.device).eval()  # scores must not depend on dropout
    layers = {name: model.get_submodule(name) for name in quantized_weights}
    examples = tokenize_pairs(tokenizer, pairs, recipe.max_length)
    if not examples:
        raise PatchError(f"every pair's prompt is longer than --max-length {recipe.max_length}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = DataCollatorForPreference(pad_token_id=pad, max_length=recipe.max_length)
    batches = ({k: v.to(request.device) for k, v in collate([e]).items()} for e in examples)
    full_precision = {name: module.weight.detach() for name, module in layers.items()}
    scores = snip.safety_scores(model, batches, layers, full_precision, loss=recipe.score_loss, beta=recipe.beta)

    sparse: dict[str, torch.Tensor] = {}
    kept = total = 0
    with torch.no_grad():
        for name, module in layers.items():
            keep = snip.top_fraction(scores[name].cpu(), fraction)
            dense_q = quantized_weights[name].to(module.weight.dtype)
            if dense_q.shape != module.weight.shape:
                raise PatchError(f"{name}: quantized shape {tuple(dense_q.shape)} != full-precision "
                                 f"{tuple(module.weight.shape)}")
            # "16-bit": bf16/fp16 checkpoints keep their own values; fp32 ones are rounded to fp16, so the
            # dense checkpoint and the compact sparse file hold the same numbers.
            full = module.weight.detach().cpu()
            value_dtype = full.dtype if full.dtype in (torch.float16, torch.bfloat16) else torch.float16
            full16 = full.to(value_dtype)
            module.weight.copy_(torch.where(keep, full16.to(full.dtype), dense_q).to(module.weight.device))
            flat = keep.flatten().nonzero().squeeze(1)
            sparse[f"{name}.indices"] = flat
            sparse[f"{name}.values"] = full16.flatten()[flat].contiguous()
            kept += int(keep.sum())
            total += keep.numel()
    seconds = time.perf_counter() - started
    model.to("cpu").save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    save_file(sparse, str(out_dir / "safety_critical.safetensors"))
    bits = request.spec.bits
    log(f"keep-critical: {kept} of {total} quantized weights kept at full precision ({100 * kept / total:.2f}%)")
    return {"method": "keep-critical", "keep_fraction": fraction, "kept": kept, "quantized_entries": total,
            "snip_wall_seconds": round(seconds, 3), "trainable_parameters": 0,
            # dense b-bit grid everywhere + (16-bit value, 32-bit index) per kept weight
            "storage_bits_per_weight": round(bits + (kept / total) * (16 + 32), 3),
            "saved_as": "dense checkpoint equal to dequantized Q with W at the kept positions; "
                        "sparse part in safety_critical.safetensors"}
