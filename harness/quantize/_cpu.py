"""CPU-only workarounds for quantizer libraries, kept in one place and out of every GPU path.

llm-compressor's sequential pipeline pins cached activations in page-locked memory so that later
host-to-device copies can be non-blocking (`IntermediatesCache.pin_memory`). Without an accelerator
`Tensor.pin_memory()` raises "Cannot access accelerator device when none is available", so AWQ
(which uses that pipeline) fails on a CPU-only machine. Pinning buys nothing without a device, so on
such a machine we make it a no-op for the duration of one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def no_pinned_memory_without_accelerator() -> Iterator[bool]:
    """Yields True when the workaround is active (no CUDA device), False when nothing was changed."""
    import torch

    if torch.cuda.is_available():
        yield False
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield True
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


# The `aqlm` package's CPU kernel for 256-entry codebooks (`numba_gemm_lut`) is not used on CPU, for two
# reasons. It runs its outer loop over *input* groups with `numba.prange` while every iteration adds into
# the same output elements: a data race, wrong results with more than one numba thread (measured here: max
# error ~20 against a matmul by the decoded weight, 1e-5 with one thread; tested). And it computes one input
# row at a time (a Python loop over rows, each a LUT GEMV), so a batch of 32 prompts x 124 positions is
# ~4,000 GEMVs per layer: a 135M model took ~6 min per batch of 32 AdvBench prompts with one thread, about
# 3 h for one board cell. Instead each layer's weight is decoded once, with aqlm's own decoder
# (`aqlm.utils._dequantize_weight`, the one its `dequantize_gemm` kernel calls on every forward), and
# multiplied densely: the same weights, the same product up to float summation order (tested), at the cost
# of the decoded fp32 weights in memory (refused in one line when they do not fit). Measured on
# smollm2-135m AQLM 4-bit: 384 of 384 AdvBench generations identical to the one-thread LUT kernel's; the
# whole cell (520 generations, 200 likelihoods) in 4.5 min. Evaluation (backends.make_lm) and training
# (qresafe/bases.py) both go through here; CUDA kernels are separate code and run as they are.
def decode_aqlm_weights_once(model, available_gib: float | None = None) -> int:
    """Replace the forward of every CPU `aqlm.QuantizedLinear` by a dense matmul with its decoded weight;
    returns how many layers changed. Call after loading and before the first forward."""
    import types

    import torch
    from aqlm import QuantizedLinear
    from aqlm.utils import _dequantize_weight, unpack_int_data

    from .base import QuantError

    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear) and not m.codebooks.is_cuda]
    if not layers:
        return 0
    if any(layer.gemv_op is not None for layer in layers):  # aqlm's first CPU forward permutes `codes` in place
        raise QuantError("internal: AQLM weights must be decoded before the model's first forward")
    need = sum(layer.out_features * layer.in_features for layer in layers) * 4 / 2**30
    available = available_memory_gib() if available_gib is None else available_gib
    if need > available:
        raise QuantError(f"evaluating this AQLM model on CPU decodes its weights to {need:.1f} GiB of fp32; "
                         f"{available:.1f} GiB is available: run it on a GPU (aqlm's CUDA kernels)")
    with torch.no_grad():
        for layer in layers:
            nbits = layer.codebooks.shape[1].bit_length() - 1
            weight = _dequantize_weight(unpack_int_data(layer.codes, nbits), layer.codebooks, layer.scales)
            layer.register_buffer("decoded_weight", weight.contiguous(), persistent=False)
            layer.forward = types.MethodType(_decoded_forward, layer)
    return len(layers)


def _decoded_forward(self, input):  # noqa: A002 - nn.Linear's name
    import torch.nn.functional as F

    return F.linear(input, self.decoded_weight, self.bias)


def available_memory_gib() -> float:
    """MemAvailable (what the kernel can give without swapping); total physical memory where it is unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    from .base import host_memory_gib

    return host_memory_gib()
