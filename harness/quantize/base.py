"""What every quantization method declares, and the recipe that records how a variant was made.

A method is a module with one function, `quantize(base_dir, recipe, calib, out_dir, log)`, that writes
a Hugging Face model directory (safetensors + config, loadable with transformers) into `out_dir`.
Which bits it honestly supports, which library does the work and whether it needs calibration
text or training pairs is declared here, in one table, so the CLI's `methods` matrix, the spec
validation and the README all read the same facts.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from ..core.errors import QresafeError
from ..core.recipe import StrictRecipe
from ..core.spec import CALIB_TIERS


class QuantError(QresafeError, RuntimeError):
    """A quantization request that cannot be served (one-line message)."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    library: str  # who does the numerical work
    bits: tuple[int, ...]  # what the method honestly supports
    data: Literal["none", "text", "pairs"]  # calibration text (PTQ) or (prompt, response) pairs (training)
    module: str  # implementation module under harness.quantize
    default_group_size: int | None  # None: the method has no group size
    fmt: str  # on-disk format of the result
    # Peak memory of building a variant with this implementation, in bytes per model parameter (an estimate:
    # weights as loaded plus the method's working set); `qresafe-bench methods` prints it for a 7B model, and a
    # build refuses, in one line, a model the machine cannot hold.
    bytes_per_param: float = 2.2
    memory_note: str = "16-bit weights, one layer's working set"
    note: str = ""

    def implementation(self) -> QuantizeFn:
        return importlib.import_module(f"{__package__}.{self.module}").quantize


# The quantizer table: one row per method of the vocabulary (core/spec.py METHODS), in the same order.
QUANTIZERS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("rtn", "llm-compressor QuantizationModifier (round-to-nearest, min-max scales)", (8, 4, 3, 2),
               "none", "llmc", 128, "compressed-tensors"),
    MethodInfo("gptq", "llm-compressor GPTQModifier", (8, 4, 3, 2), "text", "llmc", 128, "compressed-tensors"),
    MethodInfo("awq", "llm-compressor AWQModifier", (8, 4, 3, 2), "text", "llmc", 128,
               "compressed-tensors",
               note="AutoAWQ is deprecated; on CPU a pin-memory workaround applies (quantize/_cpu.py)"),
    MethodInfo("aqlm", "additive codebooks written in AQLM format (this project's quantizer; `aqlm` runtime)",
               (4, 3, 2), "text", "aqlm_format", None, "aqlm", 4.5,
               "float32 weights and per-layer input statistics"),
    MethodInfo("bnb-int8", "bitsandbytes LLM.int8()", (8,), "none", "bnb", None, "bitsandbytes", 2.0,
               "16-bit shards while loading, then 1 byte per weight"),
    MethodInfo("bnb-nf4", "bitsandbytes NF4", (4,), "none", "bnb", 64, "bitsandbytes", 2.0,
               "16-bit shards while loading, then half a byte per weight"),
    MethodInfo("bnb-fp4", "bitsandbytes FP4", (4,), "none", "bnb", 64, "bitsandbytes", 2.0,
               "16-bit shards while loading, then half a byte per weight"),
    MethodInfo("qlora", "bitsandbytes NF4 + PEFT LoRA fine-tune", (4,), "pairs", "qlora", 64,
               "bitsandbytes + LoRA adapter", 2.5, "16-bit shards while loading; NF4 base, LoRA training state"),
    MethodInfo("llm-qat", "fake-quant fine-tune (compressed-tensors fake_quantize, straight-through) then RTN",
               (8, 4, 3, 2), "pairs", "llm_qat", 128, "compressed-tensors", 16.0,
               "float32 weights, gradients and AdamW moments: a full fine-tune"),
)}


def method_info(name: str) -> MethodInfo:
    try:
        return QUANTIZERS[name]
    except KeyError:
        raise QuantError(f"unknown quantization method {name!r}; known: {', '.join(QUANTIZERS)}") from None


SEVEN_B = 6.74e9  # parameters of Llama-2-7B, the size `qresafe-bench methods` states memory for


def memory_gib(info: MethodInfo, parameters: float) -> float:
    return info.bytes_per_param * parameters / 2**30


def parameter_count(model_dir: Path) -> int:
    """Parameters of a safetensors checkpoint, read from its headers (no weights are loaded)."""
    from safetensors import safe_open

    total = 0
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():
                total += math.prod(handle.get_slice(name).get_shape())
    return total


def host_memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def check_memory(info: MethodInfo, model_dir: Path, available_gib: float | None = None) -> None:
    """Refuse, in one line, a build this machine cannot hold (estimate: bytes per parameter x parameters)."""
    parameters = parameter_count(model_dir)
    need = memory_gib(info, parameters)
    available = host_memory_gib() if available_gib is None else available_gib
    if parameters and need > available:
        raise QuantError(f"{info.name} on this {parameters / 1e9:.1f}B-parameter model needs about {need:.0f} GiB "
                         f"({info.memory_note}); this machine has {available:.0f} GiB")


def check_supported(method: str, bits: int) -> MethodInfo:
    info = method_info(method)
    if bits not in info.bits:
        raise QuantError(f"{method} does not support {bits}-bit weights; it supports "
                         f"{', '.join(map(str, info.bits))} bits ({info.library})")
    return info


class QuantRecipe(StrictRecipe):
    """How one variant was made: plain data that round-trips YAML; unknown keys are errors.
    Saved as `qresafe_recipe.yaml` beside every quantized checkpoint."""

    error: ClassVar[type[QresafeError]] = QuantError

    method: str
    bits: int
    group_size: int | None = None  # None = the method's default; -1 = per-channel
    calib: Literal[CALIB_TIERS] = "none"
    seed: int = 0
    num_calibration_samples: int = 128  # PTQ: calibration sequences
    max_seq_length: int = 256  # PTQ and training: tokens per sequence
    train_steps: int = 100  # qlora / llm-qat
    learning_rate: float = 2e-4  # qlora / llm-qat
    train_batch_size: int = 8  # qlora / llm-qat: conversations per optimizer step (Qi et al. use ~10)
    lora_r: int = 16  # qlora
    lora_alpha: int = 32  # qlora

    @property
    def effective_group_size(self) -> int | None:
        return self.group_size if self.group_size is not None else method_info(self.method).default_group_size



class QuantizeFn(Protocol):
    def __call__(self, base_dir: Path, recipe: QuantRecipe, calib: object, out_dir: Path,
                 log: Callable[[str], None]) -> None: ...
