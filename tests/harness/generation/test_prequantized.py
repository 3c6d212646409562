"""Pre-quantized GPTQ and AWQ checkpoints (the registry's `prequantized:` entries, used with --calib none) in
the hf backend. Tiny checkpoints of both formats are written here by gptqmodel's own quantizer, the library
transformers loads them through, from a random 1-layer Llama; each must load through the backend, generate,
and compute what its dequantized weights compute. Without the libraries, the backend refuses in one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.generation import backends
from qresafe_bench.harness.generation.backends import BackendError, BackendSettings, checkpoint_format, make_lm
from qresafe_bench.harness.models.registry import ResolvedModel

FORMATS = ("gptq", "awq")
CALIBRATION = ["Write a short poem about the sea.", "Explain how a bicycle works.", "List three colours.",
               "Describe a quiet morning.", "Give two tips for learning to cook.", "Name a few rivers."] * 4


def _declared(path: Path, method: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama",
                                                  "quantization_config": {"quant_method": method, "bits": 4}}))
    return path


@pytest.mark.parametrize("method", FORMATS)
def test_missing_library_is_refused_in_one_line_before_loading(method: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gptqmodel", "optimum") else real_find_spec(name, *a))
    import lm_eval.api.registry

    monkeypatch.setattr(lm_eval.api.registry, "get_model", lambda name: pytest.fail("the model was loaded"))
    model = ResolvedModel(name="llama2-7b", location=str(_declared(tmp_path / method, method)), source="hub",
                          dtype="float16")
    with pytest.raises(BackendError) as refused:
        make_lm(model, BackendSettings())
    message = str(refused.value)
    assert "\n" not in message and "gptqmodel" in message and "pip install 'qresafe-bench[prequantized]'" in message
    assert ("optimum" in message) == (method == "gptq")


def test_other_checkpoints_are_not_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    for method in ("compressed-tensors", "bitsandbytes"):
        backends.check_prequantized_libraries(ResolvedModel(
            name="m", location=str(_declared(tmp_path / method, method)), source="variant", dtype="float32"))
    backends.check_prequantized_libraries(ResolvedModel(name="m", location=str(tmp_path), source="local",
                                                        dtype="float32"))


@pytest.fixture(scope="module")
def quantized(tiny_random_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{format: checkpoint} written by gptqmodel from the random Llama (4-bit, groups of 32: the width is 64)."""
    pytest.importorskip("gptqmodel", reason="needs the prequantized extra: pip install 'qresafe-bench[prequantized]'")
    pytest.importorskip("optimum", reason="needs the prequantized extra: pip install 'qresafe-bench[prequantized]'")
    root = tmp_path_factory.mktemp("prequantized")
    with pytest.MonkeyPatch.context() as env:
        env.chdir(root)  # gptqmodel writes its quantization logs into ./logs
        # gptqmodel 7.6 asks for 2 CPU loader workers but grants (cores + 1) // 2: a 2-core machine crashes without this
        env.setenv("GPTQMODEL_CPU_WORKERS", "2")
        # its C++ packer is compiled on first use (minutes on 2 cores); the Python packer writes the same tensors
        env.setenv("GPTQMODEL_DISABLE_PACK_EXT", "1")
        from gptqmodel import BACKEND, GPTQModel, QuantizeConfig

        configs = {  # GPTQ as TheBloke's and Qwen's releases are (symmetric); AWQ GEMM with zero points, as theirs
            "gptq": (QuantizeConfig(bits=4, group_size=32, sym=True, desc_act=False), BACKEND.AUTO),
            # gptqmodel picks its CUDA AWQ packer on CPU unless told otherwise
            "awq": (QuantizeConfig(bits=4, group_size=32, sym=False, quant_method="awq", format="gemm"),
                    BACKEND.AWQ_TORCH),
        }
        for method, (config, backend) in configs.items():
            model = GPTQModel.load(str(tiny_random_dir), config, device="cpu")  # bfloat16: its CPU AWQ packer has no fp32
            model.quantize(CALIBRATION, batch_size=4, backend=backend)
            model.save(str(root / method))
    return {method: root / method for method in FORMATS}


def _dequantized(layer: torch.nn.Module) -> torch.Tensor:
    """The [out, in] weight gptqmodel decodes from a layer's packed tensors (before its first forward: the CPU
    kernel repacks them then)."""
    if hasattr(layer, "awq_weight_dequantize"):
        return layer.awq_weight_dequantize(device="cpu", dtype=torch.float32).T
    return layer.dequantize_weight().float().T


def _reference(base_dir: Path, checkpoint: Path) -> tuple[torch.nn.Module, torch.nn.Module, float]:
    """(the base model, the checkpoint with every quantized layer replaced by a dense one holding its
    dequantized weight, relative error of those weights against the base's)."""
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    dense = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    err = norm = 0.0
    for name, layer in [(n, m) for n, m in dense.named_modules() if isinstance(m, BaseQuantLinear)]:
        linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(_dequantized(layer))
            if layer.bias is not None:
                linear.bias.copy_(layer.bias)
        dense.set_submodule(name, linear)
        original = base.get_submodule(name).weight.detach()
        err += (linear.weight.detach() - original).pow(2).sum().item()
        norm += original.pow(2).sum().item()
    assert norm > 0, "no quantized layer in the checkpoint"
    return base, dense, (err / norm) ** 0.5


@pytest.mark.parametrize("method", FORMATS)
def test_checkpoint_loads_through_the_backend_and_generates(method: str, quantized: dict[str, Path],
                                                            tiny_random_dir: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    from lm_eval.api.instance import Instance

    path = quantized[method]
    assert checkpoint_format(str(path)) == (method, 4)
    model = ResolvedModel(name=f"tiny-{method}", location=str(path), source="hub", dtype="float32",
                          fingerprint=f"hub:tiny-{method}")
    capsys.readouterr()
    lm = make_lm(model, BackendSettings(batch_size=2))
    assert capsys.readouterr().out == ""  # gptqmodel logs while it loads: to stderr, since stdout carries results
    layers = [m for m in lm.model.modules() if isinstance(m, BaseQuantLinear)]
    assert len(layers) == 7  # q, k, v, o, gate, up, down of the one decoder layer; lm_head stays dense

    requests = [Instance(request_type="generate_until", doc={}, idx=i,
                         arguments=(prompt, {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": False}))
                for i, prompt in enumerate(CALIBRATION[:2])]
    outputs = lm.generate_until(requests)
    assert len(outputs) == 2 and all(isinstance(text, str) for text in outputs) and any(outputs)

    base, dense, weight_error = _reference(tiny_random_dir, path)
    assert 0 < weight_error < 0.2  # a 4-bit grid of the base's weights, not something else
    ids = torch.tensor([lm.tokenizer.encode(CALIBRATION[0])])
    with torch.no_grad():
        logits = lm.model(ids).logits.float()
        expected, unquantized = dense(ids).logits, base(ids).logits
    # the CPU kernel multiplies in bfloat16: close to the dequantized weights' fp32 logits, and far closer to
    # them than to the unquantized model's
    gap = (logits - expected).abs().max().item()
    assert gap < 1e-2 and gap < 0.25 * (logits - unquantized).abs().max().item()
