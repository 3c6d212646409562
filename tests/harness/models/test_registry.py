import re
from pathlib import Path

import pytest

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.generation.backends import BackendSettings, lm_eval_model_args
from qresafe_bench.harness.models import hub
from qresafe_bench.harness.models.registry import (
    SHIPPED_REGISTRY,
    RegistryError,
    load_registry,
    lookup,
    resolve,
)


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


COMMIT = re.compile(r"[0-9a-f]{40}")


def _pinned_revisions() -> list[tuple[str, str]]:
    """(where, revision) for every pin in the shipped registry: hub_ids and pre-quantized checkpoints."""
    pins = []
    for name, entry in load_registry(SHIPPED_REGISTRY).items():
        if entry.revision:
            pins.append((f"{name} {entry.hub_id}", entry.revision))
        pins.extend((f"{name} {key} {checkpoint.repo}", checkpoint.revision)
                    for key, checkpoint in entry.prequantized.items() if checkpoint.revision)
    return pins


def test_every_shipped_pin_is_a_full_lowercase_commit_hash() -> None:
    pins = _pinned_revisions()
    assert len(pins) >= 4  # the hub models the paper and its successors name are pinned
    bad = [(where, revision) for where, revision in pins if not COMMIT.fullmatch(revision)]
    assert bad == []


def test_every_shipped_pin_names_its_source_beside_it() -> None:
    """A pin nobody can trace is no better than a guess: its line, or the comment line just above, says where
    the commit was found."""
    lines = SHIPPED_REGISTRY.read_text().splitlines()
    pinned = [i for i, line in enumerate(lines) if line.strip().startswith("revision:")]
    assert len(pinned) == len(_pinned_revisions())
    unsourced = [lines[i].strip() for i in pinned
                 if "#" not in lines[i] and not lines[i - 1].strip().startswith("#")]
    assert unsourced == []


@pytest.mark.parametrize("body", [
    "awq-4: me/model-AWQ@0123456789abcdef0123456789abcdef01234567",
    "awq-4: {repo: me/model-AWQ, revision: 0123456789abcdef0123456789abcdef01234567}",
])
def test_a_prequantized_checkpoint_carries_its_revision_in_either_form(tmp_path: Path, body: str) -> None:
    user = tmp_path / "models.yaml"
    user.write_text(f"my-model:\n  source: hub\n  hub_id: me/model\n  prequantized:\n    {body}\n")
    checkpoint = load_registry(user)["my-model"].prequantized["awq-4"]
    assert checkpoint.repo == "me/model-AWQ" and checkpoint.revision == "0123456789abcdef0123456789abcdef01234567"


def test_an_unpinned_prequantized_checkpoint_stays_a_plain_repo(tmp_path: Path) -> None:
    user = tmp_path / "models.yaml"
    user.write_text("my-model:\n  source: hub\n  hub_id: me/model\n  prequantized:\n    awq-4: me/model-AWQ\n")
    checkpoint = load_registry(user)["my-model"].prequantized["awq-4"]
    assert checkpoint.repo == "me/model-AWQ" and checkpoint.revision is None
    assert checkpoint.fingerprint == "hub:me/model-AWQ"  # the key form stored runs were made with


@pytest.mark.parametrize(("body", "message"), [
    ("awq-4: me/model-AWQ@", "no revision"),
    ("awq-4: {repo: me/model-AWQ, commit: abc}", "commit"),
    ("awq-4: {revision: abc}", "repo"),
])
def test_a_malformed_prequantized_checkpoint_is_a_one_line_error(tmp_path: Path, body: str, message: str) -> None:
    user = tmp_path / "models.yaml"
    user.write_text(f"my-model:\n  source: hub\n  hub_id: me/model\n  prequantized:\n    {body}\n")
    with pytest.raises(RegistryError, match=message) as info:
        load_registry(user)
    assert "prequantized" in str(info.value) and "\n" not in str(info.value)


def test_a_prequantized_revision_reaches_the_resolved_model(tmp_path: Path, monkeypatch) -> None:
    checkpoint = load_registry()["qwen2.5-7b"].prequantized["awq-4"]
    assert checkpoint.revision
    fetched = []

    def snapshot(name: str, hub_id: str, revision: str | None = None) -> Path:
        fetched.append((name, hub_id, revision))
        return tmp_path / "snapshot"

    monkeypatch.setattr(hub, "snapshot", snapshot)  # no hub: the call itself is what is checked
    spec = VariantSpec(model="qwen2.5-7b", quant="awq", bits=4, calib="none")
    resolved = resolve(spec, cache_root=tmp_path)
    assert fetched == [("qwen2.5-7b", checkpoint.repo, checkpoint.revision)]
    assert resolved.location == str(tmp_path / "snapshot") and resolved.revision == checkpoint.revision
    assert checkpoint.revision in resolved.fingerprint and checkpoint.revision in resolved.provenance
    unbuilt = resolve(spec, cache_root=tmp_path, build=False)
    assert unbuilt.location == checkpoint.repo and unbuilt.revision == checkpoint.revision
    assert unbuilt.fingerprint == resolved.fingerprint


def test_a_pinned_revision_reaches_the_loader_arguments(tmp_path: Path) -> None:
    for spec in (VariantSpec(model="llama3-8b"), VariantSpec(model="llama3-8b", quant="aqlm", bits=2, calib="none")):
        resolved = resolve(spec, cache_root=tmp_path, build=False)
        assert resolved.revision and COMMIT.fullmatch(resolved.revision)
        _, args = lm_eval_model_args(resolved, BackendSettings(name="hf"))
        assert args["revision"] == resolved.revision and args["pretrained"] == resolved.location
