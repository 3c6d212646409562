"""--keep-safety-critical (qresafe/keep_critical.py): the result is the quantized variant with only the kept
positions changed, on every integer-grid method, including the ones that change more than the linear weights
(AWQ's scaled norms, LLM-QAT's trained embeddings, norms and head)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.data.calibration import CalibrationSet
from qresafe_bench.harness.models.resolved import ResolvedModel
from qresafe_bench.qresafe.config import PatchError, PatchRecipe
from qresafe_bench.qresafe.pairs import PatchPrompt, PreferencePair

CALIB = CalibrationSet("direct", tuple(
    ({"role": "user", "content": f"Explain how item {i} works."},
     {"role": "assistant", "content": f"Item {i} works by turning slowly."}) for i in range(8)))
PAIRS = [PreferencePair(PatchPrompt(({"role": "user", "content": f"Explain how item {i} works."},), "harmful"),
                        "I cannot help with that request.", f"Sure, here is how item {i} works.") for i in range(4)]
IDS = torch.tensor([[5, 17, 42, 99, 7, 120, 64, 3, 250, 11, 33, 80]])
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def variant(tiny_random_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """variant(method) -> the 4-bit, group-16 variant of the tiny random model (built once per module)."""
    from qresafe_bench.harness.quantize import llm_qat, llmc
    from qresafe_bench.harness.quantize.base import QuantRecipe

    root = tmp_path_factory.mktemp("keep-critical-variants")
    built: dict[str, Path] = {}

    def get(method: str) -> Path:
        if method not in built:
            out = root / method
            if method == "llm-qat":
                recipe = QuantRecipe(method=method, bits=4, group_size=16, calib="direct", train_steps=5,
                                     learning_rate=1e-3, max_seq_length=64)
                llm_qat.quantize(tiny_random_dir, recipe, CALIB, out, log=lambda _: None)
            else:
                recipe = QuantRecipe(method=method, bits=4, group_size=16, calib="none" if method == "rtn" else "direct",
                                     max_seq_length=32)
                llmc.quantize(tiny_random_dir, recipe, CALIB, out, log=lambda _: None)
            built[method] = out
        return built[method]

    return get


def keep_critical(tiny_random_dir: Path, variant_dir: Path, method: str, fraction: float, out: Path) -> dict:
    """build_keep_critical with `fraction` kept; 0 and 1 (outside the CLI's range) keep nothing / everything."""
    from qresafe_bench.qresafe.keep_critical import build_keep_critical
    from qresafe_bench.qresafe.patch import PatchRequest

    recipe = PatchRecipe.for_method("keep-critical", keep_fraction=0.5).model_copy(update={"keep_fraction": fraction})
    spec = VariantSpec(model=str(tiny_random_dir), quant=method, bits=4, group_size=16,
                       calib="none" if method == "rtn" else "direct")
    base = ResolvedModel("tiny", str(tiny_random_dir), "local", "auto")
    quantized = ResolvedModel(spec.slug, str(variant_dir), "variant", "auto")
    out.mkdir(parents=True)
    return build_keep_critical(PatchRequest(spec=spec, recipe=recipe), base, quantized, PAIRS, out, log=lambda _: None)


def logits(path: Path) -> torch.Tensor:
    """Logits as the evaluation loads the model (transformers, the checkpoint's own dtype and format)."""
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(path).eval()(IDS).logits


def stored(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted(path.glob("model*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.parametrize("method", ["rtn", "gptq", "llm-qat"])
def test_nothing_kept_is_the_variant(tiny_random_dir: Path, variant, tmp_path: Path, method: str) -> None:
    report = keep_critical(tiny_random_dir, variant(method), method, 0.0, tmp_path / "kc")
    assert report["kept"] == 0
    # exact: the variant's embeddings, norms and head, its dequantized grid, its dtype
    assert torch.equal(logits(tmp_path / "kc"), logits(variant(method)))


def test_awq_nothing_kept_assembly_is_the_variant(tiny_random_dir: Path, variant) -> None:
    """The tensors keep-critical starts from carry AWQ's scaled norms: loaded into the full-precision architecture
    they give the variant's logits exactly, where the full-precision norms would not."""
    from transformers import AutoModelForCausalLM

    from qresafe_bench.qresafe.keep_critical import load_tensors, variant_tensors

    tensors, names = variant_tensors(variant("awq"))
    assert sorted(name.rsplit(".", 1)[-1] for name in names) == sorted(LINEAR)
    model = AutoModelForCausalLM.from_pretrained(tiny_random_dir).eval()
    fp_norm = model.model.layers[0].input_layernorm.weight.detach().clone()
    load_tensors(model, tensors)
    assert not torch.equal(model.model.layers[0].input_layernorm.weight, fp_norm)  # AWQ did scale the norm
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, logits(variant("awq")))


def test_awq_is_refused_in_one_line(tiny_random_dir: Path, variant, tmp_path: Path) -> None:
    with pytest.raises(PatchError, match="cannot run on awq") as info:
        keep_critical(tiny_random_dir, variant("awq"), "awq", 0.1, tmp_path / "kc")
    assert "\n" not in str(info.value)
    assert not any((tmp_path / "kc").iterdir())


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_keep_everything_is_the_full_precision_model(tiny_random_dir: Path, variant, tmp_path: Path,
                                                     method: str) -> None:
    """rtn and gptq quantize in the full-precision model's own space, so keeping every weight gives it back
    (the fp32 fixture's linear weights as their fp16 values: the 16-bit copy is what is kept)."""
    from transformers import AutoModelForCausalLM

    keep_critical(tiny_random_dir, variant(method), method, 1.0, tmp_path / "kc")
    reference = AutoModelForCausalLM.from_pretrained(tiny_random_dir).eval()
    with torch.no_grad():
        for name, module in reference.named_modules():
            if name.rsplit(".", 1)[-1] in LINEAR:
                module.weight.copy_(module.weight.half().float())
        expected = reference(IDS).logits
    assert torch.equal(logits(tmp_path / "kc"), expected)


def test_llm_qat_kept_values_are_the_base_weights_inside_the_variant(tiny_random_dir: Path, variant,
                                                                     tmp_path: Path) -> None:
    """LLM-QAT does not store its latent weights, so a kept entry is the base model's 16-bit weight; every other
    tensor stays the QAT-trained one. Keeping everything is therefore not the base model."""
    from safetensors.torch import load_file

    from qresafe_bench.qresafe.merge import dequantized_weights

    qat = variant("llm-qat")
    base, trained = stored(tiny_random_dir), stored(qat)
    for fraction, out in ((0.1, tmp_path / "some"), (1.0, tmp_path / "all")):
        report = keep_critical(tiny_random_dir, qat, "llm-qat", fraction, out)
        assert "latent weights are not stored" in report["kept_values_from"]
        saved, sparse = stored(out), load_file(out / "safety_critical.safetensors")
        for name, dense_q in dequantized_weights(qat).items():
            weight = saved.pop(f"{name}.weight").flatten()
            kept = torch.zeros_like(weight, dtype=torch.bool)
            kept[sparse[f"{name}.indices"]] = True
            assert int(kept.sum()) == round(fraction * weight.numel())
            assert torch.equal(weight[kept], base[f"{name}.weight"].flatten()[kept].half().float())
            assert torch.equal(weight[~kept], dense_q.flatten()[~kept])
        assert saved.keys() == {k for k in trained if k.rsplit(".", 2)[-2] not in LINEAR}
        for key, value in saved.items():  # embeddings, norms, head: the variant's, which QAT moved off the base's
            assert torch.equal(value, trained[key]) and not torch.equal(value, base[key])


def test_tensors_the_variant_lacks_or_adds_are_refused(tiny_random_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from qresafe_bench.qresafe.keep_critical import load_tensors

    model = AutoModelForCausalLM.from_pretrained(tiny_random_dir)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    norm = tensors.pop("model.norm.weight")
    with pytest.raises(PatchError, match="does not store model.norm.weight"):
        load_tensors(model, tensors)
    with pytest.raises(PatchError, match="holds model.extra, which"):
        load_tensors(model, {**tensors, "model.norm.weight": norm, "model.extra": norm})
