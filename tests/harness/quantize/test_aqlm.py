"""The `aqlm` method: this project's additive quantizer writes checkpoints that transformers loads
through its AQLM integration and the `aqlm` package's CPU kernel runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.data.calibration import CalibrationSet
from qresafe_bench.harness.quantize import aqlm_format
from qresafe_bench.harness.quantize.base import QuantError, QuantRecipe

pytest.importorskip("aqlm")
numba = pytest.importorskip("numba")  # the aqlm CPU kernel for 256-entry codebooks (aqlm[cpu])

PROMPTS = ("Write a short poem about the sea.", "Explain how a bicycle works.", "List three colours.",
           "Describe a quiet morning.", "Give two tips for learning to cook.", "Name a few rivers.")


def _calib() -> CalibrationSet:
    return CalibrationSet("benign", tuple(
        ({"role": "user", "content": p}, {"role": "assistant", "content": f"Sure. {p} Here it is, briefly."})
        for p in PROMPTS))


def _tiny_llama(out: Path, tokenizer_dir: Path, hidden: int, intermediate: int) -> Path:
    """A random 1-layer Llama wide enough that 256-entry codebooks must actually share entries
    (hidden 128: 2048 groups of 8 per projection), with the session fixture's tokenizer. Every
    projection is 128x128, so the aqlm CPU kernel is JIT-compiled (numba) for one shape only."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=0, eos_token_id=1, pad_token_id=2)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def base_dir(tiny_random_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_llama(tmp_path_factory.mktemp("aqlm-base"), tiny_random_dir, 128, 128)


@pytest.fixture(scope="module")
def quantized(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("aqlm-out")
    out = {}
    for bits in (2, 4):
        out[bits] = root / f"aqlm-{bits}"
        recipe = QuantRecipe(method="aqlm", bits=bits, calib="benign", max_seq_length=64)
        aqlm_format.quantize(base_dir, recipe, _calib(), out[bits], lambda _: None)
    return out


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def _dequantized(module) -> torch.Tensor:
    """The weight the aqlm package decodes from the stored codes (call before the first forward:
    aqlm's CPU path permutes `codes` in place then)."""
    from aqlm.utils import _dequantize_weight, unpack_int_data

    codes = unpack_int_data(module.codes.data, 8)
    return _dequantize_weight(codes, module.codebooks.data, module.scales.data)


def test_checkpoint_is_aqlm_format_and_generates_on_cpu(quantized: dict[int, Path]) -> None:
    from aqlm import QuantizedLinear

    from qresafe_bench.harness.generation.backends import checkpoint_format

    out = quantized[2]
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "aqlm"
    assert (config["num_codebooks"], config["nbits_per_codebook"], config["in_group_size"],
            config["out_group_size"]) == (2, 8, 8, 1)
    assert "lm_head" in config["linear_weights_not_to_quantize"]
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    assert (out / "tokenizer.json").is_file()

    model = _load(out)
    layer = model.model.layers[0]
    attn, mlp = layer.self_attn, layer.mlp
    projections = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj,
                   mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    assert all(isinstance(m, QuantizedLinear) for m in projections)
    assert type(model.lm_head) is torch.nn.Linear
    assert model.lm_head.weight.dtype == torch.float32

    # The aqlm CPU kernel (numba, Kx8 codebooks) reads our codes as we meant them: it agrees with
    # a plain matmul by the decoded weight, for one token (gemv) and for several (gemm), with one numba
    # thread (the product itself decodes once instead: test_cpu_eval_decodes_once_and_matches_the_aqlm_kernel).
    assert checkpoint_format(str(out))[0] == "aqlm" and checkpoint_format(str(out.parent))[0] is None
    numba.set_num_threads(1)  # aqlm's kernel races with more (see the race test below)
    q = layer.self_attn.q_proj
    w_hat = _dequantized(q)
    x = torch.randn(1, 9, q.in_features)
    with torch.no_grad():
        assert torch.allclose(q(x), x @ w_hat.T, atol=1e-4, rtol=1e-4)
        assert torch.allclose(q(x[:, :1]), x[:, :1] @ w_hat.T, atol=1e-4, rtol=1e-4)

    ids = torch.tensor([[0, 5, 17, 42]])
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape == (1, 9)


def test_cpu_eval_decodes_once_and_matches_the_aqlm_kernel(quantized: dict[int, Path]) -> None:
    """The evaluation path on CPU (backends.make_lm) multiplies by each layer's weight decoded once instead of
    aqlm's row-by-row LUT kernel: same logits to float order, same greedy tokens."""
    from aqlm import QuantizedLinear

    from qresafe_bench.harness.quantize import _cpu

    numba.set_num_threads(1)  # aqlm's kernel races with more (see the race test below)
    kernel, decoded = _load(quantized[4]), _load(quantized[4])
    assert _cpu.decode_aqlm_weights_once(decoded) == 7
    assert all(hasattr(m, "decoded_weight") for m in decoded.modules() if isinstance(m, QuantizedLinear))
    ids = torch.tensor([[0, 5, 17, 42, 9, 3, 11, 8]])
    with torch.no_grad():
        a, b = kernel(ids).logits, decoded(ids).logits
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert torch.equal(kernel.generate(ids, max_new_tokens=8, do_sample=False),
                       decoded.generate(ids, max_new_tokens=8, do_sample=False))

    with pytest.raises(QuantError, match="run it on a GPU") as err:
        _cpu.decode_aqlm_weights_once(_load(quantized[4]), available_gib=1e-6)
    assert "\n" not in str(err.value)
    with pytest.raises(QuantError, match="before the model's first forward"):
        _cpu.decode_aqlm_weights_once(kernel)  # already ran aqlm's kernel, which permuted its codes


def test_hf_backend_on_cpu_decodes_aqlm_weights(quantized: dict[int, Path]) -> None:
    from aqlm import QuantizedLinear

    from qresafe_bench.harness.generation.backends import BackendSettings, make_lm
    from qresafe_bench.harness.models.resolved import ResolvedModel

    lm = make_lm(ResolvedModel(name="aqlm-4", location=str(quantized[4]), source="local", dtype="float32"),
                 BackendSettings())
    layers = [m for m in lm.model.modules() if isinstance(m, QuantizedLinear)]
    assert len(layers) == 7 and all(hasattr(m, "decoded_weight") for m in layers)


def test_error_falls_as_bits_rise(base_dir: Path, quantized: dict[int, Path]) -> None:
    base = _load(base_dir)
    errors = {}
    for bits, path in quantized.items():
        model = _load(path)
        err = norm = 0.0
        for name, module in model.named_modules():
            if hasattr(module, "codebooks"):
                weight = base.get_submodule(name).weight.detach()
                err += (weight - _dequantized(module)).pow(2).sum().item()
                norm += weight.pow(2).sum().item()
        errors[bits] = (err / norm) ** 0.5
    assert 0 < errors[4] < errors[2] < 1


def test_data_aware_weighting_lowers_the_weighted_error() -> None:
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(96, 64, generator=gen)
    importance = torch.rand(64, generator=gen).pow(4) * 100  # a few columns carry most activation energy

    def weighted_error(codes_codebooks_scales) -> float:
        diff = weight - aqlm_format.dequantize(*codes_codebooks_scales)
        return ((diff.pow(2) * importance).sum() / (weight.pow(2) * importance).sum()).sqrt().item()

    aware = aqlm_format.additive_quantize(weight, 2, importance, torch.Generator().manual_seed(0))
    uniform = aqlm_format.additive_quantize(weight, 2, None, torch.Generator().manual_seed(0))
    assert weighted_error(aware) < 0.8 * weighted_error(uniform)
    again = aqlm_format.additive_quantize(weight, 2, importance, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(aware, again, strict=True))  # seeded: deterministic
    codes, codebooks, scales = aware
    assert codes.shape == (96, 8, 2) and codebooks.shape == (2, 256, 1, 8) and scales.shape == (96, 1, 1, 1)
    assert int(codes.min()) >= 0 and int(codes.max()) <= 255


@pytest.mark.parametrize("bits, group_size", [(8, None), (1, None), (2, 16)])
def test_unsupported_settings_are_refused(base_dir: Path, tmp_path: Path, bits: int,
                                          group_size: int | None) -> None:
    recipe = QuantRecipe(method="aqlm", bits=bits, group_size=group_size, calib="benign")
    with pytest.raises(QuantError) as err:
        aqlm_format.quantize(base_dir, recipe, _calib(), tmp_path / "out", lambda _: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_input_width_not_divisible_by_8_is_refused(tiny_random_dir: Path, tmp_path: Path) -> None:
    base = _tiny_llama(tmp_path / "odd", tiny_random_dir, 36, 64)  # q_proj reads 36 inputs
    with pytest.raises(QuantError, match="divisible by 8") as err:
        aqlm_format.quantize(base, QuantRecipe(method="aqlm", bits=2, calib="benign"), _calib(),
                             tmp_path / "out", lambda _: None)
    assert "\n" not in str(err.value)
    shutil.rmtree(base)


def test_upstream_cpu_kernel_races_with_threads_and_is_exact_with_one() -> None:
    """One reason the product never runs this kernel on CPU (harness/quantize/_cpu.py): aqlm's numba kernel
    accumulates into shared outputs from a parallel loop. If upstream fixes it, the race check stops
    failing. A race shows only when the two threads overlap, which a loaded machine can prevent (0 of 5
    calls raced while two other jobs held both cores), so the check tries up to 50 calls and skips, saying
    so, when none raced; the one-thread exactness below is asserted either way."""
    from aqlm.inference_kernels.numba_kernel import numba_gemm_lut

    gen = torch.Generator().manual_seed(0)
    codebooks = torch.randn(2, 256, 1, 8, generator=gen)
    codes = torch.randint(-128, 128, (128, 16, 2), dtype=torch.int8, generator=gen)
    scales = torch.rand(128, 1, 1, 1, generator=gen)
    weight = aqlm_format.dequantize(codes.to(torch.int64) % 256, codebooks, scales)
    x = torch.randn(9, 128, generator=gen)
    kernel_codes = codes.permute(1, 0, 2).contiguous()  # the layout aqlm's CPU path permutes to
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        raced = None
        if numba.get_num_threads() > 1:
            raced = any((numba_gemm_lut(x, kernel_codes, codebooks, scales, None) - x @ weight.T).abs().max().item()
                        > 1e-2 for _ in range(50))
        numba.set_num_threads(1)
        assert torch.allclose(numba_gemm_lut(x, kernel_codes, codebooks, scales, None), x @ weight.T, atol=1e-4)
    finally:
        numba.set_num_threads(before)
    if raced is False:
        pytest.skip("aqlm's 2-thread kernel gave exact results in 50 calls: no race seen on this (loaded?) machine; "
                    "run again on idle cores to tell whether upstream fixed it")
