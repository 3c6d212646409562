"""RTN, GPTQ and AWQ through llm-compressor, saved as compressed-tensors (transformers and vLLM load it).

Why llm-compressor: AutoGPTQ no longer imports with transformers 5 and AutoAWQ is deprecated; their
maintained successor for both algorithms is llm-compressor (GPTQModifier, AWQModifier), whose
compressed-tensors checkpoints vLLM loads natively. RTN is llm-compressor's plain
QuantizationModifier: min-max scales per group, round to nearest, no calibration data needed.

Weights only (activations stay 16/32-bit), symmetric integer grids for RTN/GPTQ as in the GPTQ paper,
asymmetric for AWQ as in the AWQ paper; `lm_head` stays unquantized, as in all three papers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import QuantError, QuantRecipe


def scheme_for(recipe: QuantRecipe, symmetric: bool) -> dict:
    group_size = recipe.effective_group_size
    weights = {"num_bits": recipe.bits, "type": "int", "symmetric": symmetric}
    if group_size == -1:
        weights["strategy"] = "channel"
    else:
        weights.update(strategy="group", group_size=group_size)
    return {"group_0": {"targets": ["Linear"], "weights": weights}}


def check_group_size(model, group_size: int | None) -> None:
    if group_size in (None, -1):
        return
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head" and module.in_features % group_size:
            raise QuantError(f"--group-size {group_size} does not divide the input width {module.in_features} "
                             f"of {name}; choose a divisor or -1 (per-channel)")


def resolve_group_size(model, recipe: QuantRecipe, log: Callable[[str], None]) -> QuantRecipe:
    """With no --group-size, the method's default (128) when it divides every layer width; else the
    largest of 64, 32, 16 that does (small models: the reference model is 192 wide). The value used
    is written to the variant's recipe.yaml. An explicit --group-size is never changed."""
    import torch

    if recipe.group_size is not None:
        check_group_size(model, recipe.group_size)
        return recipe
    widths = {m.in_features for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    for group in (recipe.effective_group_size, 64, 32, 16):
        if all(w % group == 0 for w in widths):
            if group != recipe.effective_group_size:
                log(f"default group size {recipe.effective_group_size} does not divide layer widths "
                    f"{sorted(widths)}: using {group}")
            return recipe.model_copy(update={"group_size": group})
    raise QuantError(f"no default group size divides the layer widths {sorted(widths)}; pass --group-size -1")


def quantize(base_dir: Path, recipe: QuantRecipe, calib, out_dir: Path, log: Callable[[str], None]) -> None:
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ._cpu import no_pinned_memory_without_accelerator

    _quiet_llmcompressor()
    torch.manual_seed(recipe.seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto", use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    recipe = resolve_group_size(model, recipe, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "qresafe_recipe.yaml").write_text(recipe.to_yaml())  # the group size actually used
    if recipe.method == "rtn":
        modifier, dataset = QuantizationModifier(config_groups=scheme_for(recipe, True), ignore=["lm_head"]), None
    elif recipe.method == "gptq":
        modifier = GPTQModifier(config_groups=scheme_for(recipe, True), ignore=["lm_head"])
        dataset = calib.tokenized(tokenizer, recipe.max_seq_length)
    elif recipe.method == "awq":
        # AWQ = activation-aware smoothing (a transform) followed by RTN on the smoothed weights.
        modifier = [AWQModifier(), QuantizationModifier(config_groups=scheme_for(recipe, False), ignore=["lm_head"])]
        dataset = calib.tokenized(tokenizer, recipe.max_seq_length)
    else:  # pragma: no cover - dispatch table in base.py
        raise QuantError(f"llmc cannot run {recipe.method}")
    log(f"{recipe.method}: {recipe.bits}-bit, group {recipe.effective_group_size}, "
        f"{len(dataset) if dataset is not None else 0} calibration sequences")
    kwargs = {}
    if dataset is not None:
        kwargs = dict(dataset=dataset, num_calibration_samples=len(dataset), max_seq_length=recipe.max_seq_length)
    with no_pinned_memory_without_accelerator():
        oneshot(model=model, recipe=modifier, **kwargs)
    model.save_pretrained(out_dir, save_compressed=True)
    tokenizer.save_pretrained(out_dir)


def _quiet_llmcompressor() -> None:
    """llm-compressor logs through loguru at INFO/WARNING per layer ("No accelerator available!" on CPU);
    the harness reports progress itself."""
    from loguru import logger

    logger.disable("llmcompressor")
    logger.disable("compressed_tensors")
