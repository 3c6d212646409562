"""Variants are built on demand, recorded with their recipe, reused, and refused clearly."""

from pathlib import Path

import pytest

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.models import registry
from qresafe_bench.harness.models.variants import default_calib, recipe_for
from qresafe_bench.harness.quantize.base import QuantError, QuantRecipe


def test_variant_is_built_once_with_its_recipe(tiny_random_dir: Path, tmp_path: Path, monkeypatch) -> None:
    spec = VariantSpec(model=str(tiny_random_dir), quant="rtn", bits=4, group_size=16)
    resolved = registry.resolve(spec, cache_root=tmp_path, log=lambda _: None)
    path = Path(resolved.location)
    assert resolved.source == "variant" and path.parent == tmp_path / "variants"
    assert QuantRecipe.from_yaml((path / "qresafe_recipe.yaml").read_text()) == recipe_for(spec)
    from qresafe_bench.harness.quantize import llmc

    monkeypatch.setattr(llmc, "quantize", lambda *a, **k: pytest.fail("variant rebuilt"))
    assert registry.resolve(spec, cache_root=tmp_path, log=lambda _: None) == resolved


def test_interrupted_build_leaves_nothing(tiny_random_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from qresafe_bench.harness.quantize import llmc

    def boom(base_dir, recipe, calib, out_dir, log):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(llmc, "quantize", boom)
    with pytest.raises(KeyboardInterrupt):
        registry.resolve(VariantSpec(model=str(tiny_random_dir), quant="rtn", bits=4, group_size=16),
                         cache_root=tmp_path, log=lambda _: None)
    assert list((tmp_path / "variants").iterdir()) == []


def test_calibrated_variant_uses_its_tier(tiny_random_dir: Path, tmp_path: Path, data_dir: Path) -> None:
    spec = VariantSpec(model=str(tiny_random_dir), quant="gptq", bits=4, calib="direct", group_size=16)
    resolved = registry.resolve(spec, cache_root=tmp_path, data_dir=data_dir, log=lambda _: None)
    assert "direct" in Path(resolved.location).name
    assert list((tmp_path / "calibration").glob("direct-*.jsonl"))


@pytest.mark.parametrize(("spec", "message"), [
    (VariantSpec(model="x", quant="gptq", bits=4), "needs data to calibrate"),
    (VariantSpec(model="x", quant="rtn", bits=4, calib="benign"), "uses no calibration data"),
    (VariantSpec(model="x", quant="bnb-nf4", bits=2), "supports 4 bits"),
    (VariantSpec(model="x", quant="awq", bits=8, group_size=32, calib="none"), "needs data"),
])
def test_recipe_refusals(spec: VariantSpec, message: str) -> None:
    with pytest.raises(QuantError, match=message):
        recipe_for(spec)


def test_default_calibration_tier() -> None:
    assert default_calib("gptq") == "benign" and default_calib("qlora") == "benign"
    assert default_calib("rtn") == "none" and default_calib("bnb-nf4") == "none"


def test_hub_models_are_quantized_from_a_hub_snapshot_never_without_one(tmp_path: Path, monkeypatch) -> None:
    from qresafe_bench.harness.models.resolved import RegistryError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the snapshot must come from the local cache, which lacks it
    not_cached = "gemma-7b: google/gemma-7b-it@[0-9a-f]{40} is not in the local Hugging Face cache"
    with pytest.raises(RegistryError, match=not_cached):
        registry.resolve(VariantSpec(model="gemma-7b", quant="rtn", bits=4), cache_root=tmp_path, log=lambda _: None)
    assert not (tmp_path / "variants").exists()


def test_prequantized_checkpoint_is_used_when_asked(tmp_path: Path) -> None:
    resolved = registry.resolve(VariantSpec(model="llama2-7b", quant="awq", bits=4, calib="none"), cache_root=tmp_path,
                                build=False, log=lambda _: None)
    assert resolved.location == "TheBloke/Llama-2-7B-Chat-AWQ" and resolved.source == "hub"


def test_a_build_killed_outright_leaves_nothing_after_the_next_build(tmp_path: Path) -> None:
    import subprocess
    import sys

    from qresafe_bench.harness.models.variants import building

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "variants" / "m_rtn_w4-abc"
    stale = path.with_name(f".{path.name}.tmp-{dead.pid}")
    live = path.with_name(f".{path.name}.tmp-1")  # pid 1 is alive: another build's, left alone
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    with building(path) as tmp:
        (tmp / "config.json").write_text("{}")
    assert not stale.exists() and live.exists() and (path / "config.json").is_file()
