from pathlib import Path

import pytest

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.models.registry import RegistryError, load_registry, lookup, resolve


def test_shipped_registry_has_the_paper_models_and_successors() -> None:
    registry = load_registry()
    assert registry["llama2-7b"].hub_id == "meta-llama/Llama-2-7b-chat-hf"
    assert registry["gemma-7b"].hub_id == "google/gemma-7b-it"
    assert registry["gemma-7b"].system_role is False
    for name in ("llama3-8b", "qwen2.5-7b", "ref-tiny", "ref-tiny-base"):
        assert name in registry
    assert registry["llama2-7b"].prequantized["awq-4"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(RegistryError) as info:
        lookup("llama9-1t", load_registry())
    assert "llama2-7b" in str(info.value) and "ref-tiny" in str(info.value)


def test_user_file_extends_and_overrides(tmp_path: Path) -> None:
    user = tmp_path / "models.yaml"
    user.write_text("my-model:\n  source: hub\n  hub_id: me/my-model\nllama2-7b:\n  source: hub\n  hub_id: mirror/llama\n")
    registry = load_registry(user)
    assert registry["my-model"].hub_id == "me/my-model"
    assert registry["llama2-7b"].hub_id == "mirror/llama"


@pytest.mark.parametrize(("body", "message"), [
    ("x:\n  source: hub\n  hubid: typo\n", "hubid"),
    ("x:\n  source: hub\n", "no hub_id"),
    ("x: [1, 2\n", "not valid YAML"),
])
def test_bad_user_files_are_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    user = tmp_path / "models.yaml"
    user.write_text(body)
    with pytest.raises(RegistryError, match=message):
        load_registry(user)


def test_hub_entries_resolve_without_network(tmp_path: Path) -> None:
    resolved = resolve(VariantSpec(model="llama2-7b"), cache_root=tmp_path, build=False)
    assert resolved.location == "meta-llama/Llama-2-7b-chat-hf" and resolved.dtype == "float16"


def test_local_directory_needs_config(tmp_path: Path, tiny_random_dir: Path) -> None:
    with pytest.raises(RegistryError, match="no config.json"):
        resolve(VariantSpec(model=str(tmp_path)), cache_root=tmp_path)
    resolved = resolve(VariantSpec(model=str(tiny_random_dir)), cache_root=tmp_path)
    assert resolved.source == "local" and len(resolved.fingerprint) == 16
