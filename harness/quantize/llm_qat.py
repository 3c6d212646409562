"""LLM-QAT-style quantization-aware fine-tuning, then real quantization with llm-compressor RTN.

What it does: every decoder Linear (not `lm_head`) computes with fake-quantized weights: each forward
takes the current weights' min-max scales per group (llm-compressor's own weight observer,
`memoryless_minmax`, the one its RTN uses) and quantizes-dequantizes them with compressed-tensors'
`fake_quantize`, on the same scheme as the `rtn` method (symmetric int, `bits`, group size or
per-channel: llmc.py's `scheme_for`). The straight-through estimator `w + (fq(w) - w).detach()` passes the
gradient to the latent full-precision weights, which a full-parameter AdamW fine-tune updates on the
calibration conversations (assistant-token loss, _train.py). The fake quantization sits on the weight
as a torch parametrization, so the model's own forward is unchanged. Afterwards the latent weights are
saved to a temporary folder in fp32 and quantized for real by llmc.py's RTN: the same observer, scheme
and dtype, so the saved integer grid is exactly the one the forward trained against.
Saved as compressed-tensors (transformers and vLLM load it), like `rtn`/`gptq`/`awq`.

Departures from LLM-QAT (Liu et al. 2023): they fine-tune on data the full-precision model generates
itself (data-free distillation from the teacher's logits) and quantize activations and the KV cache as
well. Here only the weights are quantized, and training is plain next-token loss on the calibration
tier: the point of the Q-resafe calibration-risk study is what the quantization-time training data
does to safety, so the data must be that tier, not the model's own samples. Training runs in fp32
(master weights and AdamW states: 16 bytes per parameter), so full fine-tunes of large models need
the memory for it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from . import _train, llmc
from .base import QuantRecipe, check_supported


def fake_quant_module(args):
    """A torch parametrization: weight -> fake-quantized weight, straight-through gradient."""
    import torch
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from llmcompressor.observers import Observer

    class _FakeQuantSTE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # The observer llm-compressor attaches to weights for RTN (calibration.py there): min-max
            # of the current weights, no memory across calls.
            self.observer = Observer.load_from_registry("memoryless_minmax", base_name="weight", args=args)

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                qparams = self.observer(weight).get_qparams()
                quantized = fake_quantize(weight, qparams["scale"], qparams["zero_point"], args)
            return weight + (quantized - weight).detach()

    return _FakeQuantSTE()


def quantization_args(recipe: QuantRecipe):
    """The weight QuantizationArgs of the final RTN (llmc.py's symmetric scheme for this recipe)."""
    from compressed_tensors.quantization import QuantizationArgs

    return QuantizationArgs(**llmc.scheme_for(recipe, True)["group_0"]["weights"])


def add_fake_quant(model, recipe: QuantRecipe) -> list[str]:
    """Parametrize every decoder Linear's weight with fake quantization; returns their names."""
    import torch
    from torch.nn.utils import parametrize

    args = quantization_args(recipe)
    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] != "lm_head":
            parametrize.register_parametrization(module, "weight", fake_quant_module(args))
            names.append(name)
    return names


def remove_fake_quant(model) -> None:
    """Back to plain Linears holding the latent full-precision weights (what RTN then quantizes)."""
    from torch.nn.utils import parametrize

    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def quantize(base_dir: Path, recipe: QuantRecipe, calib, out_dir: Path, log: Callable[[str], None]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_supported("llm-qat", recipe.bits)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    examples = _train.assistant_examples(tokenizer, calib.conversations, recipe.max_seq_length, log)
    torch.manual_seed(recipe.seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, use_safetensors=True)
    if torch.cuda.is_available():
        model.to("cuda")
    recipe = llmc.resolve_group_size(model, recipe, log)  # fail before training, not after
    group_size = recipe.group_size
    names = add_fake_quant(model, recipe)
    log(f"llm-qat: {recipe.bits}-bit fake quantization (group {group_size}) on {len(names)} Linears, full "
        f"fine-tune on {len(examples)} conversations, {recipe.train_steps} steps, lr {recipe.learning_rate}")
    checkpoint = _train.checkpoint_dir_for(out_dir, base_dir, recipe.to_yaml(), examples)
    _train.train(model, examples, pad=_train.pad_id(tokenizer), steps=recipe.train_steps,
                 lr=recipe.learning_rate, seed=recipe.seed, log=log, batch_size=recipe.train_batch_size,
                 checkpoint_dir=checkpoint)
    remove_fake_quant(model)

    # The real quantization is the `rtn` method itself, on the trained weights, with the same scheme.
    rtn = recipe.model_copy(update={"method": "rtn", "group_size": group_size})
    # The fp32 weights are as big as the base (or twice): keep them on the store's disk, not in /tmp.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".llm-qat-", dir=out_dir.parent) as tmp:
        model.to("cpu").save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        llmc.quantize(Path(tmp), rtn, None, out_dir, log)
    (out_dir / "qresafe_recipe.yaml").write_text(recipe.to_yaml())  # this variant's recipe, not the inner rtn one
    _train.remove_checkpoint(checkpoint)
