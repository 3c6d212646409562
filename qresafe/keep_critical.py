"""Q-resafe without fine-tuning: keep the safety-critical weights in 16-bit, quantize the rest.

    qresafe-bench patch --model ref-tiny --quant rtn --bits 4 --keep-safety-critical 0.01

The paper's training-free variant: SNIP scores on the *full-precision* model (the same pairs and the
same loss as the patch: y_w from the full-precision model, y_l from the quantized one; the DPO gradient
at the reference point, or the NLL of y_w) pick the top `fraction` of each quantized layer's weights;
those take a 16-bit value and the rest keep the quantized ones (dense quantized + sparse 16-bit, as in
SpQR-style outlier formats).

The result is built from the quantized variant itself: every tensor that is not a quantized linear weight
(embeddings, norms, lm_head, biases) exactly as the variant stores it, every quantized linear weight
dequantized from the variant's integer grid (merge.dequantized_weights), and only the kept positions
replaced. A quantizer may change more than the linear weights (AWQ folds its scales into the norms,
LLM-QAT trains embeddings, norms and head), so starting from the full-precision model and swapping in the
dequantized linears would silently evaluate a model that is neither. With nothing kept the result is
the variant (tested: identical logits).

Which 16-bit value a kept position takes, per method (`KEPT_VALUES_FROM`, recorded in the report):
- rtn, gptq: the full-precision weight. Their linear weights live in the full-precision model's space and
  nothing else is changed, so keeping every weight gives back the full-precision model (tested).
- llm-qat: the full-precision *base* weight. The right value would be the QAT latent weight the grid was
  rounded from, trained together with the variant's embeddings, norms and head, but the variant does not
  store it (harness/quantize/llm_qat.py quantizes the latent weights from a temporary folder). The base
  weight is the safety-aligned value the scores were taken on; it is not the QAT model's own, so keeping
  every weight gives base linear weights inside the QAT-trained embeddings, norms and head (tested as
  such), not any model that existed before.
- awq: refused (`check_keep_critical`). AWQ stores the smoothed weights W·diag(s) and divides the layer
  that feeds them by s. Where that layer is a norm (q/k/v, gate/up inputs), s = fp norm / variant norm
  could be read back; but llm-compressor's default mappings also smooth v_proj -> o_proj and
  up_proj -> down_proj, whose scales exist only inside the rounded weights, so W_fp cannot be mapped into
  the variant's space exactly (measured on the micro model: down_proj's columns scaled by 0.70 to 1.43).

For RTN "quantize the rest" is the existing grid (min-max scales of the whole group, as the paper's RTN
baseline; scales that exclude the kept weights would be a further improvement); for GPTQ it keeps the
error compensation computed with all weights present. bitsandbytes, aqlm and qlora are refused
(check_request in patch.py): their dequantized values are not a per-entry grid we can mix with.

Saved as: a dense Hugging Face checkpoint in the variant's dtype whose tensors are exactly "the variant,
dequantized, with the 16-bit values at the kept positions" (what a dense + sparse kernel computes), which
every loader and lm-eval's `hf` model read as is; plus `safety_critical.safetensors`, the sparse part in
its compact form (flat int64 indices + 16-bit values per layer), and the storage it would cost in the
report. We do not ship a dense+sparse inference kernel: on CPU the evaluation runs the dense equivalent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..harness.models.resolved import ResolvedModel
from .config import UNIFORM_GRID_METHODS, PatchError
from .pairs import PreferencePair, tokenize_pairs

if TYPE_CHECKING:
    import torch

    from .patch import PatchRequest

# Where a kept position's 16-bit value comes from, per quantization method this variant supports.
KEPT_VALUES_FROM: dict[str, str] = {
    "rtn": "the full-precision model's weight (rtn changes only the linear weights, in the same space)",
    "gptq": "the full-precision model's weight (gptq changes only the linear weights, in the same space)",
    "llm-qat": "the full-precision base model's weight: the QAT latent weights are not stored with the variant, "
               "so kept entries are the base's values inside the variant's QAT-trained embeddings, norms and head",
}
REFUSED: dict[str, str] = {
    "awq": "--keep-safety-critical cannot run on awq variants: AWQ's up_proj->down_proj and v_proj->o_proj scales "
           "are stored only inside the rounded weights, so a 16-bit weight cannot be mapped into the variant's "
           "scaled space exactly",
}
# Tensors of a compressed-tensors layer that together encode its weight (merge.grid_tensors decodes them).
# Anything else of that layer (an activation-order index, say) is not decoded, so it must not be dropped silently:
# it reaches load_tensors, which refuses it.
_GRID_SUFFIXES = (".weight_packed", ".weight_scale", ".weight_zero_point", ".weight_shape")


def check_keep_critical(quant: str) -> None:
    """Refuse, in one line, a quantization method whose kept weights could not be given a correct 16-bit value."""
    if quant not in UNIFORM_GRID_METHODS:
        raise PatchError(f"--keep-safety-critical needs an integer-grid format ({', '.join(UNIFORM_GRID_METHODS)}): "
                         f"{quant} stores no integer per weight that a kept 16-bit value could replace")
    if quant in REFUSED:
        raise PatchError(REFUSED[quant])
    if quant not in KEPT_VALUES_FROM:
        raise PatchError(f"--keep-safety-critical supports {', '.join(KEPT_VALUES_FROM)} variants, not {quant}")


def variant_dtype(variant_dir: Path) -> torch.dtype:
    """The dtype the variant's config declares (what `dtype="auto"` loads it in)."""
    import torch

    config = json.loads((Path(variant_dir) / "config.json").read_text())
    name = config.get("dtype") or config.get("torch_dtype")
    if not isinstance(name, str) or not isinstance(getattr(torch, name, None), torch.dtype):
        raise PatchError(f"{Path(variant_dir).name}/config.json declares no dtype; cannot save the variant's tensors "
                         "as they are")
    return getattr(torch, name)


def variant_tensors(variant_dir: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every tensor of the variant as a dense model holds it (unquantized tensors as stored, quantized linear
    weights dequantized, fp32, under their layer's `.weight` name), and the names of the quantized layers."""
    from safetensors import safe_open

    from .merge import dequantized_weights

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(Path(variant_dir).glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                if not key.endswith(_GRID_SUFFIXES):
                    tensors[key] = handle.get_tensor(key)
    linear = dequantized_weights(Path(variant_dir))
    for name, weight in linear.items():
        tensors[f"{name}.weight"] = weight
    return tensors, list(linear)


def load_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy `tensors` into every entry of the model's state dict; anything the model holds that `tensors` does
    not set (other than the second name of a tied weight) or the reverse is refused: a silently kept
    full-precision tensor is what this module exists to prevent."""
    state = model.state_dict()
    unexpected = sorted(set(tensors) - set(state))
    if unexpected:
        raise PatchError(f"the variant holds {unexpected[0]}, which the full-precision architecture has no place for")
    loaded = {state[key].data_ptr() for key in tensors}
    unset = sorted(key for key in set(state) - set(tensors) if state[key].data_ptr() not in loaded)
    if unset:
        raise PatchError(f"the variant does not store {unset[0]}; refusing to fill it from the full-precision model")
    model.load_state_dict(tensors, strict=False)


def sixteen_bit(weight: torch.Tensor) -> torch.Tensor:
    """The 16-bit value of a full-precision weight: bf16/fp16 checkpoints keep their own values, fp32 ones are
    rounded to fp16, so the dense checkpoint and the compact sparse file hold the same numbers."""
    import torch

    return weight if weight.dtype in (torch.float16, torch.bfloat16) else weight.to(torch.float16)


def build_keep_critical(request: PatchRequest, base: ResolvedModel, quantized: ResolvedModel,
                        pairs: list[PreferencePair], out_dir: Path, *, log: Callable[[str], None]) -> dict:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from . import snip

    check_keep_critical(request.spec.quant)
    recipe = request.recipe
    fraction = recipe.keep_fraction
    started = time.perf_counter()
    variant_dir = Path(quantized.location)
    dtype = variant_dtype(variant_dir)
    tensors, quantized_names = variant_tensors(variant_dir)
    tokenizer = AutoTokenizer.from_pretrained(base.location)
    model = AutoModelForCausalLM.from_pretrained(base.location, dtype="auto", use_safetensors=True)
    model.to(request.device).eval()  # scores must not depend on dropout
    layers = {name: model.get_submodule(name) for name in quantized_names}
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
            key = f"{name}.weight"
            if tensors[key].shape != module.weight.shape:
                raise PatchError(f"{name}: quantized shape {tuple(tensors[key].shape)} != full-precision "
                                 f"{tuple(module.weight.shape)}")
            keep = snip.top_fraction(scores[name].cpu(), fraction)
            flat = keep.flatten().nonzero().squeeze(1)
            values = sixteen_bit(module.weight.detach().cpu()).flatten()[flat].contiguous()
            dense = tensors[key].to(dtype).contiguous()  # a view, so the write below lands in it
            dense.view(-1)[flat] = values.to(dtype)
            tensors[key] = dense
            sparse[f"{name}.indices"] = flat
            sparse[f"{name}.values"] = values
            kept += int(keep.sum())
            total += keep.numel()
        # the scoring model becomes the result: the variant's tensors replace every one it holds
        model.to("cpu", dtype=dtype)
        load_tensors(model, tensors)
    seconds = time.perf_counter() - started
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    save_file(sparse, str(out_dir / "safety_critical.safetensors"))
    bits = request.spec.bits
    log(f"keep-critical: {kept} of {total} quantized weights kept at 16 bit ({100 * kept / total:.2f}%), "
        f"from {KEPT_VALUES_FROM[request.spec.quant]}")
    return {"method": "keep-critical", "keep_fraction": fraction, "kept": kept, "quantized_entries": total,
            "snip_wall_seconds": round(seconds, 3), "trainable_parameters": 0,
            # dense b-bit grid everywhere + (16-bit value, 32-bit index) per kept weight
            "storage_bits_per_weight": round(bits + (kept / total) * (16 + 32), 3),
            "kept_values_from": KEPT_VALUES_FROM[request.spec.quant],
            "saved_as": "dense checkpoint equal to the quantized variant (its embeddings, norms, head and biases as "
                        "stored, its linear weights dequantized) with the 16-bit values at the kept positions; "
                        "sparse part in safety_critical.safetensors"}

