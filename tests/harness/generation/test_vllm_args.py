"""vLLM model args and refusals: plain file checks, no vLLM needed (runs in the default suite)."""

import json
from pathlib import Path

import pytest

from qresafe_bench.harness.generation.backends import BackendError, BackendSettings, lm_eval_model_args, vllm_refusal
from qresafe_bench.harness.models.registry import ResolvedModel


def _checkpoint(path: Path, quantization_config: dict | None) -> ResolvedModel:
    path.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"]}
    if quantization_config:
        config["quantization_config"] = quantization_config
    (path / "config.json").write_text(json.dumps(config))
    return ResolvedModel(name=path.name, location=str(path), source="variant", dtype="float32")


def _ct(bits: int) -> dict:
    return {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": bits}}}}


@pytest.mark.parametrize(("config", "needle"), [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bitsandbytes weights cannot be loaded by vLLM"),
    ({"quant_method": "aqlm"}, "aqlm weights cannot be loaded by vLLM"),
    (_ct(2), "compressed-tensors weights are 2-bit"),
    (_ct(3), "compressed-tensors weights are 3-bit"),
])
def test_unloadable_formats_are_refused_in_one_line_naming_hf(tmp_path: Path, config: dict, needle: str) -> None:
    model = _checkpoint(tmp_path / "variant", config)
    with pytest.raises(BackendError, match=needle) as caught:
        lm_eval_model_args(model, BackendSettings(name="vllm"))
    message = str(caught.value)
    assert "\n" not in message and message.endswith("use --backend hf")


def test_adapter_variant_on_bitsandbytes_names_both(tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "qlora", {"quant_method": "bitsandbytes", "load_in_4bit": True})
    model = ResolvedModel(**{**model.__dict__, "adapter": str(tmp_path / "qlora" / "adapter")})
    assert "bitsandbytes + LoRA adapter weights cannot be loaded by vLLM" in vllm_refusal(model)


@pytest.mark.parametrize("config", [None, _ct(4), _ct(8), {"quant_method": "gptq", "bits": 4},
                                    {"quant_method": "awq", "bits": 4}])
def test_loadable_formats_pass(tmp_path: Path, config: dict | None) -> None:
    assert vllm_refusal(_checkpoint(tmp_path / "m", config)) is None


def _adapter_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adapter_config: dict) -> ResolvedModel:
    """A W4 compressed-tensors checkpoint with a LoRA adapter beside it, vLLM pretended installed."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    model = _checkpoint(tmp_path / "m", _ct(4))
    adapter = tmp_path / "m" / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(adapter_config))
    return ResolvedModel(**{**model.__dict__, "adapter": str(adapter)})


def test_vllm_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _adapter_variant(tmp_path, monkeypatch, {"r": 8})
    name, args = lm_eval_model_args(model, BackendSettings(name="vllm", tensor_parallel_size=2, max_model_len=256))
    assert name == "vllm"
    assert args["pretrained"] == str(tmp_path / "m") and args["dtype"] == "float32"
    assert args["tensor_parallel_size"] == 2 and args["data_parallel_size"] == 1 and args["max_model_len"] == 256
    assert args["lora_local_path"] == model.adapter and args["max_lora_rank"] == 8
    assert args["trust_remote_code"] is False and "quantization" not in args  # read from config.json by vLLM


def test_backend_is_in_the_generation_store_key() -> None:
    assert BackendSettings(name="vllm").key() != BackendSettings(name="hf").key()


def test_adapter_without_a_rank_is_refused_not_guessed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _adapter_variant(tmp_path, monkeypatch, {"lora_alpha": 16})
    with pytest.raises(BackendError, match="no readable rank"):
        lm_eval_model_args(model, BackendSettings(name="vllm"))
