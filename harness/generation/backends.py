"""Backends: a resolved model -> an lm-eval language model.

`hf` (transformers, CPU or GPU) and `vllm` are lm-eval's own model classes; this module only builds
their arguments and refuses what a backend cannot serve. `StoreLM` (store_lm.py) sits in front of
either. lm-eval itself is imported only when a model is made, so that planning a run, or answering it
from the store, does not pay for it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..core.errors import QresafeError
from ..models.resolved import ResolvedModel

if TYPE_CHECKING:
    from lm_eval.api.model import LM

BackendName = Literal["hf", "vllm"]
BACKENDS: tuple[str, ...] = ("hf", "vllm")


class BackendError(QresafeError, RuntimeError):
    """A backend that cannot serve the request (one-line message; never a silent substitute)."""


def check_weights_format(model: ResolvedModel, allow_pickle: bool) -> None:
    """Safetensors only unless asked: a local directory that holds only pickle weights is refused before any load."""
    path = Path(model.location)
    if allow_pickle or not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickled:
        raise BackendError(f"{model.name}: {path} holds only pickle weights ({pickled[0]}); pickle can run code when "
                           "it is loaded, so it is off by default: convert them to safetensors, or pass "
                           "--allow-pickle if you trust the files")


@dataclass(frozen=True)
class BackendSettings:
    name: str = "hf"
    batch_size: int = 32
    device: str = "cpu"  # hf only; vLLM picks its own device
    tensor_parallel_size: int = 1  # vllm
    data_parallel_size: int = 1  # vllm
    max_model_len: int | None = None  # vllm
    gpu_memory_utilization: float = 0.9  # vllm
    trust_remote_code: bool = False  # off unless the user asks: a checkpoint must not run code
    allow_pickle: bool = False  # safetensors-only loading unless the user asks

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise BackendError(f"unknown --backend {self.name!r}; choose one of: {', '.join(BACKENDS)}")
        if self.batch_size < 1:
            raise BackendError(f"--batch-size must be at least 1, got {self.batch_size}")

    def key(self) -> dict:
        """What enters the store key: settings that can change outputs (not batch size or devices)."""
        return {"backend": self.name}


def lm_eval_model_args(model: ResolvedModel, settings: BackendSettings) -> tuple[str, dict]:
    """The lm-eval model name and arguments for `model` under `settings`."""
    if settings.name == "hf":
        args = {
            "pretrained": model.location,
            "dtype": model.dtype,
            "device": settings.device,
            "batch_size": settings.batch_size,
            "trust_remote_code": settings.trust_remote_code,
            "use_safetensors": not settings.allow_pickle,
        }
        if model.revision:
            args["revision"] = model.revision
        if model.adapter:
            args["peft"] = model.adapter
        return "hf", args
    refusal = vllm_refusal(model)
    if refusal:
        raise BackendError(refusal)
    if importlib.util.find_spec("vllm") is None:
        raise BackendError("--backend vllm needs vLLM: pip install 'qresafe-bench[vllm]' (GPU) or use --backend hf")
    args = {
        "pretrained": model.location,
        "dtype": model.dtype,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "data_parallel_size": settings.data_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "trust_remote_code": settings.trust_remote_code,
        "batch_size": "auto",
        # No `quantization`: vLLM reads it from the checkpoint's config.json (compressed-tensors, gptq, awq),
        # and naming "gptq"/"awq" here would pin the slower non-Marlin GPU kernels.
    }
    if settings.max_model_len:
        args["max_model_len"] = settings.max_model_len
    if model.revision:
        args["revision"] = model.revision
    if model.adapter:  # LoRA-form variants: served by vLLM's LoRA path on the same base weights
        args["lora_local_path"] = model.adapter
        args["max_lora_rank"] = _adapter_rank(model.adapter)
    return "vllm", args


# Checkpoint formats (config.json `quantization_config.quant_method`) that vLLM cannot load, and why.
VLLM_UNLOADABLE: dict[str, str] = {
    "bitsandbytes": "vLLM 0.32 has no bitsandbytes loader",
    "aqlm": "vLLM dropped its AQLM kernels",
}
VLLM_WEIGHT_BITS = (4, 8)  # compressed-tensors integer weights vLLM has kernels for


def checkpoint_format(location: str) -> tuple[str | None, int | None]:
    """(quant_method, weight bits) declared by a local checkpoint's config.json; (None, None) for an
    unquantized or non-local model."""
    import json
    from pathlib import Path

    config = Path(location) / "config.json"
    if not config.is_file():
        return None, None
    quant = json.loads(config.read_text()).get("quantization_config") or {}
    method = quant.get("quant_method")
    bits = None
    if method == "compressed-tensors":
        bits = next((g.get("weights", {}).get("num_bits") for g in (quant.get("config_groups") or {}).values()), None)
    elif method in ("gptq", "awq"):
        bits = quant.get("bits")
    elif method == "bitsandbytes":
        bits = 4 if quant.get("load_in_4bit") else 8
    return method, bits


def vllm_refusal(model: ResolvedModel) -> str | None:
    """The one-line reason vLLM cannot serve `model`, or None when it can (as far as the files say)."""
    method, bits = checkpoint_format(model.location)
    if method is None:
        return None
    what = f"{model.name}: {method}{' + LoRA adapter' if model.adapter else ''} weights"
    if method in VLLM_UNLOADABLE:
        return f"{what} cannot be loaded by vLLM ({VLLM_UNLOADABLE[method]}); use --backend hf"
    if method == "compressed-tensors" and bits is not None and bits not in VLLM_WEIGHT_BITS:
        return f"{what} are {bits}-bit; vLLM has kernels for 4- and 8-bit integer weights only; use --backend hf"
    return None


def _adapter_rank(adapter: str) -> int:
    """The LoRA rank vLLM must reserve (max_lora_rank), read from the adapter's PEFT config."""
    import json
    from pathlib import Path

    config = Path(adapter) / "adapter_config.json"
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BackendError(f"LoRA adapter at {adapter} has no readable rank (adapter_config.json with 'r'); "
                           "vLLM needs it to reserve max_lora_rank") from None


# What transformers 5.17 imports to load a pre-quantized checkpoint of each format (quantizer_gptq.py and
# quantizer_awq.py): gptqmodel holds the packed-int4 layers and their CPU and GPU kernels for both formats.
PREQUANTIZED_LIBRARIES: dict[str, tuple[str, ...]] = {"gptq": ("gptqmodel", "optimum"), "awq": ("gptqmodel",)}


def check_prequantized_libraries(model: ResolvedModel) -> None:
    """A GPTQ or AWQ checkpoint is refused before it loads when a library transformers needs for it is missing."""
    method = checkpoint_format(model.location)[0]
    missing = [name for name in PREQUANTIZED_LIBRARIES.get(method or "", ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendError(f"{model.name}: {method} weights need {' and '.join(missing)} to load in transformers: "
                           "pip install 'qresafe-bench[prequantized]'")


def make_lm(model: ResolvedModel, settings: BackendSettings) -> LM:
    from lm_eval.api.registry import get_model

    name, args = lm_eval_model_args(model, settings)
    if name == "hf":
        check_prequantized_libraries(model)
    decode_aqlm = name == "hf" and args.get("device", "cpu") == "cpu" and checkpoint_format(model.location)[0] == "aqlm"
    if name == "vllm":
        from . import vllm_cpu  # a no-op unless the installed vLLM is the CPU build

        args = vllm_cpu.prepare(args)
    import contextlib
    import sys

    # gptqmodel (GPTQ/AWQ checkpoints) prints its banner and kernel choices to stdout while the model loads;
    # stdout carries the results (--json)
    with contextlib.redirect_stdout(sys.stderr):
        lm = get_model(name).create_from_arg_obj(args)
    if decode_aqlm:  # aqlm's CPU kernel runs row by row: decode once, multiply densely (quantize/_cpu.py)
        from ..quantize import _cpu

        _cpu.decode_aqlm_weights_once(lm.model)
    return lm


def fold_system_turn(chat_history: list[dict[str, str]]) -> list[dict[str, str]]:
    """For templates without a system role (Gemma): prepend the system text to the first user turn,
    rather than dropping it as lm-eval's fallback would."""
    system = [m["content"] for m in chat_history if m["role"] == "system"]
    rest = [dict(m) for m in chat_history if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = "\n\n".join(system + [rest[0]["content"]])
    return rest
