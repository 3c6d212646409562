"""Backends: a resolved model -> an lm-eval language model, wrapped by the run store.

`hf` (transformers, CPU or GPU) and `vllm` are lm-eval's own model classes; this module only builds
their arguments. `StoreLM` sits in front of either: it answers every request it has seen before from
the store, loads the real model only when something is missing, and appends each new generation to
the store the moment the backend produces it (through lm-eval's per-item cache hook).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from lm_eval.api.model import LM, CacheHook

from .registry import ResolvedModel
from .store import GenerationLog, request_key, stable_hash

BackendName = Literal["hf", "vllm"]
BACKENDS: tuple[str, ...] = ("hf", "vllm")


class BackendError(RuntimeError):
    """A backend that cannot serve the request (one-line message; never a silent substitute)."""


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


def make_lm(model: ResolvedModel, settings: BackendSettings) -> LM:
    from lm_eval.api.registry import get_model

    name, args = lm_eval_model_args(model, settings)
    if name == "hf" and args.get("device", "cpu") == "cpu" and checkpoint_format(model.location)[0] == "aqlm":
        from .quantize import _cpu

        _cpu.serial_aqlm_cpu_kernel()
    if name == "vllm":
        from . import vllm_cpu  # a no-op unless the installed vLLM is the CPU build

        args = vllm_cpu.prepare(args)
    return get_model(name).create_from_arg_obj(args)


class _AppendToStore(CacheHook):
    """lm-eval calls `add_partial` once per finished generation; we append it to the store."""

    def __init__(self, log: GenerationLog, on_item: Callable[[], None] | None) -> None:
        super().__init__(None)
        self.log = log
        self.on_item = on_item
        self.pending: dict[str, list[str]] = {}  # base key -> occurrence keys still to be filled

    def add_partial(self, attr, req, res) -> None:
        if attr != "generate_until":
            return
        context, gen_kwargs = req
        key = request_key(context, gen_kwargs)
        pending = self.pending.get(key)
        if not pending:  # not a request we asked for under this key: lm-eval's vllm model reports its own
            return  # normalised gen kwargs; StoreLM stores those generations under their keys after the batch
        key = pending.pop(0)  # identical sampled requests: fill their occurrence keys in turn (interchangeable draws)
        self.log.append(key, context, gen_kwargs, res, sync=False)  # StoreLM syncs once per backend call
        if self.on_item:
            self.on_item()


class StoreLM(LM):
    """An lm-eval LM that serves stored generations and delegates the rest to a real backend."""

    def __init__(self, model: ResolvedModel, settings: BackendSettings, log: GenerationLog,
                 on_item: Callable[[], None] | None = None) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        self.model = model
        self.settings = settings
        self.log = log
        self.on_item = on_item
        self._inner: LM | None = None
        self.reused = 0
        self.generated = 0
        self.tokenizer = AutoTokenizer.from_pretrained(
            model.location, revision=model.revision, trust_remote_code=settings.trust_remote_code)

    # -- generation -------------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs: list[str | None] = []
        keys = occurrence_keys([request.args for request in requests])
        missing = []
        for index, key in enumerate(keys):
            stored = self.log.get(key)
            outputs.append(stored)
            if stored is None:
                missing.append(index)
        self.reused += len(requests) - len(missing)
        if missing:
            inner = self._load_inner()
            hook = _AppendToStore(self.log, self.on_item)
            for index in missing:
                hook.pending.setdefault(request_key(*requests[index].args), []).append(keys[index])
            inner.set_cache_hook(hook)
            try:
                fresh = inner.generate_until([requests[i] for i in missing])
            finally:
                self.log.sync()
            for index, text in zip(missing, fresh, strict=True):
                context, gen_kwargs = requests[index].args
                stored = self.log.get(keys[index])
                if stored is None:  # a backend that skipped the hook: store it now
                    self.log.append(keys[index], context, gen_kwargs, text)
                    stored = text
                outputs[index] = stored  # what the store holds for this key, so a rerun sees the same
            self.generated += len(missing)
        return outputs  # type: ignore[return-value]

    def _load_inner(self) -> LM:
        if self._inner is None:
            self._inner = make_lm(self.model, self.settings)
        return self._inner

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise BackendError("the harness's tasks are generative; loglikelihood requests are not stored")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise BackendError("the harness's tasks are generative; loglikelihood requests are not stored")

    # -- chat template (what lm-eval asks of a chat model) ---------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.model.system_role:
            chat_history = fold_system_turn(chat_history)
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt)


def occurrence_keys(args: list[tuple[str, dict]]) -> list[str]:
    """Store keys for a batch of (context, gen_kwargs). A request is keyed by its content; the k-th repeat
    of an identical *sampled* request (k >= 1) gets its own key, so n samples per setting are n stored
    generations, and a rerun or a resumed run finds each of them. Greedy repeats share one key: they are
    the same generation."""
    seen: dict[str, int] = {}
    keys = []
    for context, gen_kwargs in args:
        base = request_key(context, gen_kwargs)
        k = seen.get(base, 0)
        seen[base] = k + 1
        sampled = bool(gen_kwargs.get("do_sample")) if isinstance(gen_kwargs, dict) else False
        keys.append(base if k == 0 or not sampled else stable_hash({"base": base, "occurrence": k}, length=32))
    return keys


def fold_system_turn(chat_history: list[dict[str, str]]) -> list[dict[str, str]]:
    """For templates without a system role (Gemma): prepend the system text to the first user turn,
    rather than dropping it as lm-eval's fallback would."""
    system = [m["content"] for m in chat_history if m["role"] == "system"]
    rest = [dict(m) for m in chat_history if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = "\n\n".join(system + [rest[0]["content"]])
    return rest
