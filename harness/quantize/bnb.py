"""bitsandbytes int8 (LLM.int8()), NF4 and FP4, through transformers' BitsAndBytesConfig.

The checkpoint is saved serialized in bitsandbytes' own format (safetensors with the quant state),
which transformers reloads without the original weights and vLLM loads with
`quantization="bitsandbytes"`. bitsandbytes runs on CPU here (int8, nf4, fp4 all load and generate).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import QuantError, QuantRecipe


def bnb_config(method: str, group_size: int | None):
    import torch
    from transformers import BitsAndBytesConfig

    if method == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if group_size not in (None, 64):
        # bitsandbytes' 4-bit block size is fixed at 64 in transformers' integration.
        raise QuantError(f"{method} uses bitsandbytes' fixed block size 64; --group-size {group_size} is not supported")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=method.removeprefix("bnb-"),
                              bnb_4bit_compute_dtype=torch.float32, bnb_4bit_use_double_quant=False)


def load_quantized(base_dir: Path, method: str, group_size: int | None = None):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=bnb_config(method, group_size),
                                                device_map="cpu" if not _cuda() else "auto",
                                                dtype="auto", use_safetensors=True)


def quantize(base_dir: Path, recipe: QuantRecipe, calib, out_dir: Path, log: Callable[[str], None]) -> None:
    from transformers import AutoTokenizer

    log(f"{recipe.method}: loading through bitsandbytes")
    model = load_quantized(base_dir, recipe.method, recipe.group_size)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
