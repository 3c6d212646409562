"""Quantized bases the patch cannot merge into: what training on them needs beyond a plain LoRA.

Two formats, two problems.

**qlora** (an NF4 base plus the variant's own LoRA adapter, `<variant>/adapter/`). The quantized model Q0 is
NF4 + qlora adapter: it is both the model being patched and the DPO reference. The patch is a second LoRA
that must apply *on top of* the qlora adapter, and the result must be one adapter (lm-eval's `hf` model and
the variant loader take one `peft=` directory). We train the two as one concatenated adapter:

    A = [ (s_q / s) A_q ]   (r_q + r) x in          B = [ B_q | B_p ]   out x (r_q + r)
        [       A_p     ]

with one scaling s = the patch's alpha / r, so s B A = s_q B_q A_q + s B_p A_p: exactly Q0's adapter plus
the patch. This is PEFT's `add_weighted_adapter(..., combination_type="cat")` layout (which scales each A
by its weight x scaling and sets the new scaling to 1; checked in peft 0.21's `LoraModel.add_weighted_adapter`),
with the patch's scaling kept so the patch trains exactly like a fresh rank-r LoRA (same init
distribution: kaiming on A's fan-in, B = 0). The qlora slots (the first r_q rows of A, columns of B) are
outside every mask, so the masked update rule leaves them bit-identical (trainer.py). The DPO reference is
the qlora adapter alone, loaded as PEFT adapter "ref": TRL's DPOTrainer computes the reference with
`use_adapter(model, "ref")` when an adapter of that name exists (its own "re-training an existing
adapter" path), and snip.py's SNIP loss does the same. The saved adapter is the trained one as it is
(rank r_q + r); `patch_adapter/` holds the patch slots alone, for inspection and the tests.

Why not two adapters active at once (PEFT multi-adapter): PEFT's `PeftModel.set_adapter` takes one name,
and TRL switches to "ref" and back with it each step, which would silently drop the second adapter from
the training forward after the first reference pass. One concatenated adapter has no such state.

**aqlm** (`aqlm.QuantizedLinear`, PEFT's `AqlmLoraLinear`). The patch stays a LoRA adapter on the AQLM base.
On CPU three things in the `aqlm` runtime stand in the way of training: its numba kernel races across
threads, computes one input row at a time (hours per epoch), and its backward pass (gradient to the
layer's input, which every LoRA below the layer needs) fails on CPU, because the CPU path permutes `codes`
in place for the forward kernel while the backward kernel still reads the original layout (a shape error
in `_dequantize_weight`; tested). `aqlm_trainable_on_cpu` decodes each layer's weight once with aqlm's own
`_dequantize_weight` and multiplies densely (harness/quantize/_cpu.py), so autograd supplies the backward.

**Pre-quantized GPTQ / AWQ checkpoints** (the registry's `prequantized:` hub repos, `--calib none`) are refused:
their int4 weights are packed by the GPTQ/AWQ formats (gptqmodel's layers), while the patch of an integer
grid trains through compressed-tensors' dequantizing loader and merges back into a compressed-tensors grid
(merge.py); transformers refuses that loader on such a checkpoint, and merge.py cannot write its packing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .config import PatchError

if TYPE_CHECKING:
    from ..harness.models.resolved import ResolvedModel

REFERENCE_ADAPTER = "ref"  # TRL's DPOTrainer name for the frozen adapter it computes the reference with


# --- qlora: the patch concatenated onto the variant's own adapter -----------------------------------------
def base_adapter_config(adapter_dir: Path) -> dict:
    """The qlora adapter's PEFT config, refused in one line where the concatenation would not be exact."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise PatchError(f"the qlora variant has no adapter at {adapter_dir}; rebuild it with `qresafe-bench quantize`")
    config = json.loads(path.read_text())
    if config.get("peft_type") != "LORA":
        raise PatchError(f"the variant's adapter is {config.get('peft_type')}, not LoRA: cannot stack the patch on it")
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_rslora") or config.get("use_dora"):
        raise PatchError("the variant's LoRA uses rank/alpha patterns, rsLoRA or DoRA: the concatenated adapter "
                         "would not equal it; not supported")
    if isinstance(config.get("target_modules"), str):
        raise PatchError("the variant's LoRA names its targets by a regex; the patch needs a list of module names")
    return config


def stacked_lora_config(adapter_dir: Path, rank: int, alpha: float, targets: list[str]):
    """(LoraConfig of the concatenated adapter, r_q): rank r_q + rank, scaling alpha / rank, union of targets."""
    from peft import LoraConfig

    base = base_adapter_config(adapter_dir)
    base_rank = int(base["r"])
    union = sorted(set(base["target_modules"]) | set(targets))
    total = base_rank + rank
    config = LoraConfig(r=total, lora_alpha=alpha / rank * total, lora_dropout=0.0, bias="none",
                        target_modules=union, task_type="CAUSAL_LM")
    return config, base_rank


def base_adapter_factors(adapter_dir: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """{checkpoint layer name: (A_q, B_q)} (fp32) of the qlora adapter, and its scaling s_q = alpha / r."""
    from safetensors.torch import load_file

    config = base_adapter_config(adapter_dir)
    tensors = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    factors: dict[str, list] = {}
    for key, value in tensors.items():
        for side, index in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
            if key.endswith(side):
                name = key.removesuffix(side).removeprefix("base_model.model.")
                factors.setdefault(name, [None, None])[index] = value.float()
    if not factors or any(a is None or b is None for a, b in factors.values()):
        raise PatchError(f"could not read LoRA A and B for every layer from {adapter_dir}")
    return {name: (a, b) for name, (a, b) in factors.items()}, float(config["lora_alpha"]) / int(config["r"])


@torch.no_grad()
def write_base_slots(factors: dict, adapter_dir: Path, base_rank: int) -> None:
    """Put the qlora adapter into the first r_q slots of each concatenated factor (trainer.LoraFactor)."""
    base, base_scaling = base_adapter_factors(adapter_dir)
    missing = sorted(set(base) - set(factors))
    if missing:
        raise PatchError(f"internal: the concatenated adapter does not cover the qlora layer {missing[0]}")
    for name, factor in factors.items():
        factor.a[:base_rank] = 0.0
        factor.b[:, :base_rank] = 0.0
        if name in base:
            a_q, b_q = base[name]
            if a_q.shape[0] != base_rank:
                raise PatchError(f"the qlora adapter's rank at {name} is {a_q.shape[0]}, its config says {base_rank}")
            ratio = base_scaling / factor.scaling
            factor.a[:base_rank] = (a_q if ratio == 1.0 else a_q * ratio).to(factor.a.device, factor.a.dtype)
            factor.b[:, :base_rank] = b_q.to(factor.b.device, factor.b.dtype)


def save_patch_slots(adapter_dir: Path, out_dir: Path, base_rank: int, rank: int, alpha: float,
                     targets: list[str]) -> None:
    """The patch alone (slots r_q.. of the saved concatenated adapter) as a rank-r PEFT adapter."""
    from peft import LoraConfig
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    wanted = set(targets)
    out = {}
    for key, value in tensors.items():
        module = key.rsplit(".lora_", 1)[0].rsplit(".", 1)[-1]
        if module not in wanted:
            continue
        if key.endswith(".lora_A.weight"):
            out[key] = value[base_rank:].contiguous()
        elif key.endswith(".lora_B.weight"):
            out[key] = value[:, base_rank:].contiguous()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(out, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=sorted(wanted),
               task_type="CAUSAL_LM").save_pretrained(str(out_dir))


# --- aqlm: trainable on CPU ------------------------------------------------------------------------------
def aqlm_trainable_on_cpu(model) -> int:
    """Make the AQLM layers of `model` exact and differentiable on CPU; returns how many were changed.

    Each layer's weight is decoded once by aqlm's own decoder and multiplied densely (the evaluation path
    does the same, harness/quantize/_cpu.py), so autograd gives the gradient to the layer's input that the
    LoRA layers below need. Call before the first forward. GPU layers are left to aqlm's CUDA/Triton
    kernels, whose backward is their own."""
    from ..harness.quantize._cpu import decode_aqlm_weights_once

    return decode_aqlm_weights_once(model)


# --- pre-quantized GPTQ / AWQ: refused ------------------------------------------------------------------
PACKED_FORMATS: tuple[str, ...] = ("gptq", "awq")  # config.json `quant_method` of the GPTQ/AWQ packings


class PackedBaseError(PatchError):
    """A quantized model whose weights the patch can neither train through nor merge into (one line)."""


def refuse_packed_base(quantized: ResolvedModel) -> None:
    """Refuse a quantized model whose local config.json declares a GPTQ or AWQ packing (a pre-quantized hub
    checkpoint, resolved to its snapshot), before any pair is generated for it or any model loaded."""
    from ..harness.generation.backends import checkpoint_format

    method = checkpoint_format(quantized.location)[0]
    if method in PACKED_FORMATS:
        raise PackedBaseError(
            f"{quantized.name}: a pre-quantized {method.upper()} checkpoint cannot be patched: its weights are in "
            f"the {method} packing, and the patch trains through and merges into compressed-tensors grids only; "
            "patch a variant quantized here instead (any --calib but none)")
