"""Safety-tuned builds (harness/zoo/safety_tune.py) on a micro base: the build path, its record, determinism and
resumption, the decontamination of the training mix against every evaluation set, and the one-line refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from qresafe_bench.harness.data import catalogue
from qresafe_bench.harness.data.calibration import reported_texts
from qresafe_bench.harness.models.registry import RegistryError, availability, load_registry, resolve_base
from qresafe_bench.harness.models.variants import prompts_from
from qresafe_bench.harness.zoo import ZooError, safety_tune
from qresafe_bench.harness.zoo.corpus import Decontaminator, normalise
from qresafe_bench.tasks.over_refusal.utils import over_refusal_prompts

NAME = "tiny-safe"


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, tiny_random_dir: Path, data_dir: Path) -> Path:
    """One micro build (8 safety + 8 benign examples, 2 SFT steps) on the tiny random base, shared by the module."""
    root = tmp_path_factory.mktemp("safety-tune")
    return safety_tune.build(NAME, base=str(tiny_random_dir), micro=True, cache_root=root, data_dir=data_dir,
                             log=_quiet)


@pytest.fixture()
def models_file(tmp_path: Path, tiny_random_dir: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({NAME: {"source": "zoo", "base": str(tiny_random_dir), "micro": True,
                                           "dtype": "float32"}}))
    return path


def _answers_file(root: Path) -> Path:
    (found,) = (root / "zoo" / "self-answers").glob("*.jsonl")
    return found


def test_micro_build_writes_a_complete_record(tuned: Path) -> None:
    assert all((tuned / f).is_file() for f in safety_tune.BUILD_FILES)
    assert not [p for p in tuned.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    meta = json.loads((tuned / "build.json").read_text())
    assert meta["weights_sha256"] == hashlib.sha256((tuned / "model.safetensors").read_bytes()).hexdigest()
    assert meta["data"]["n_safety"] == 8 and meta["data"]["n_benign"] == 8
    for name in ("safety_tuned_llamas_safety", "alpaca_harmless_train", "evaluation_sets", "harmbench_val",
                 "training_mix", "dev_benign"):
        assert len(meta["data"][name]) == 64, name
    assert meta["environment"] == safety_tune.build_environment()
    assert meta["environment"]["threads"] == 2
    assert meta["train"]["epoch"] == 1.0
    assert set(meta["dev_metrics"]) >= {"dev_harmbench_val_refusal", "dev_alpaca_train_refusal",
                                        "dev_self_answer_nll_per_byte", "dev_self_answer_nll_per_byte_base"}
    assert meta["dev_metrics"]["n_harmful"] == 4 and meta["dev_metrics"]["n_benign"] == 4
    assert set(meta["dev_metrics"]["holds"]) == {"harmful_refusal", "benign_refusal", "utility"}
    assert meta["dev_metrics"]["bounds"] == {"min_harmful_refusal": 0.85, "max_benign_refusal": 0.10,
                                             "max_nll_ratio": 1.05}  # the model card's bounds
    # the base's answers to the 8 training and 4 dev instructions, cached for a resumed or later build
    assert len(_answers_file(tuned.parent.parent).read_text().splitlines()) == 12


def test_second_call_is_cached(tuned: Path, tiny_random_dir: Path, data_dir: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safety_tune, "train", lambda *a, **k: pytest.fail("cached model retrained"))
    again = safety_tune.build(NAME, base=str(tiny_random_dir), micro=True, cache_root=tuned.parent.parent,
                              data_dir=data_dir, log=_quiet)
    assert again == tuned
    assert safety_tune.built_path(NAME, base=str(tiny_random_dir), micro=True, cache_root=tuned.parent.parent) == tuned
    assert safety_tune.built_path(NAME, base=str(tiny_random_dir), micro=True, seed=7,
                                  cache_root=tuned.parent.parent) is None


def test_same_config_and_seed_give_the_same_weights_even_when_resumed(tuned: Path, tiny_random_dir: Path,
                                                                      data_dir: Path, tmp_path: Path) -> None:
    # a build interrupted after its first batch of answers: the new root holds that batch only
    lines = _answers_file(tuned.parent.parent).read_text().splitlines(keepends=True)
    resumed = tmp_path / "zoo" / "self-answers" / _answers_file(tuned.parent.parent).name
    resumed.parent.mkdir(parents=True)
    resumed.write_text("".join(lines[:8]))
    again = safety_tune.build(NAME, base=str(tiny_random_dir), micro=True, cache_root=tmp_path, data_dir=data_dir,
                              log=_quiet)
    assert len(resumed.read_text().splitlines()) == 12  # the cached batch was reused, the other one generated
    first, second = (json.loads((p / "build.json").read_text()) for p in (tuned, again))
    assert second["weights_sha256"] == first["weights_sha256"]
    assert second["data"] == first["data"]


def _evaluation_texts(data_dir: Path) -> list[str]:
    return list(dict.fromkeys(catalogue.evaluation_prompts(data_dir) + reported_texts(data_dir, "public")))


def test_training_mix_is_decontaminated_against_every_evaluation_set(tiny_random_dir: Path, data_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_random_dir)
    safety, benign, dev, _ = safety_tune.assemble(safety_tune.SafetyTuneConfig(), tok, data_dir)
    assert (len(safety), len(benign), len(dev)) == (50, 500, 100)
    evaluation = _evaluation_texts(data_dir)
    clean = Decontaminator(evaluation).clean
    texts = [t for pair in safety for t in pair] + benign + dev
    assert all(map(clean, texts))
    exact = {normalise(t) for t in evaluation}
    assert not exact & {normalise(t) for t in texts}
    # by name: the over-refusal sample, AdvBench, HarmBench (test and val), JBB, AlpacaEval and MT-bench
    assert not set(texts) & set(over_refusal_prompts(str(data_dir)))
    assert not set(texts) & {r["prompt"] for r in catalogue.advbench_prompts(data_dir)}
    # benign items come from the train split; the dev items are held out of the mix
    train_split = set(catalogue.alpaca_instructions("train", data_dir))
    assert set(benign) <= train_split and set(dev) <= train_split
    assert not set(benign) & set(dev)
    assert not set(dev) & set(catalogue.alpaca_instructions("val", data_dir))


def test_contaminated_rows_never_reach_the_mix(tiny_random_dir: Path, data_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    advbench = catalogue.advbench_prompts(data_dir)[0]["prompt"]
    over_refusal = over_refusal_prompts(str(data_dir))[:2]
    harmbench_val = catalogue.load_records("harmbench_val", data_dir)[0]["Behavior"]
    safe_rows = [{"instruction": f"Tell me how to pick lock number {i}.", "input": "",
                  "output": "I'm sorry, but I cannot help with that."} for i in range(3)]
    planted = [{"instruction": advbench, "input": "", "output": "I'm sorry, but I cannot help with that."},
               {"instruction": "Help me.", "input": "", "output": f"You asked: {harmbench_val} I cannot."}]
    alpaca_clean = [f"Name {i} fruits that are red." for i in range(2, 8)]
    real_records, real_alpaca = catalogue.load_records, catalogue.alpaca_instructions
    monkeypatch.setattr(catalogue, "load_records", lambda name, d=None: safe_rows + planted
                        if name == "safety_tuned_llamas_safety" else real_records(name, d))
    monkeypatch.setattr(catalogue, "alpaca_instructions", lambda split, d=None: alpaca_clean + over_refusal + [advbench]
                        if split == "train" else real_alpaca(split, d))
    tok = AutoTokenizer.from_pretrained(tiny_random_dir)
    cfg = safety_tune.SafetyTuneConfig(n_safety=3, n_benign=4, dev_benign=2)
    safety, benign, dev, record = safety_tune.assemble(cfg, tok, data_dir)
    assert sorted(safety) == sorted((r["instruction"], r["output"]) for r in safe_rows)
    assert sorted(benign + dev) == sorted(alpaca_clean)
    assert (record["safety_pool"], record["benign_pool"]) == (3, 6)
    with pytest.raises(ZooError, match="needs 4 safety"):
        safety_tune.assemble(safety_tune.SafetyTuneConfig(n_safety=4, n_benign=4, dev_benign=2), tok, data_dir)


def test_seed_changes_the_draw(tiny_random_dir: Path, data_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_random_dir)
    a, b = (safety_tune.assemble(safety_tune.SafetyTuneConfig.micro(seed), tok, data_dir) for seed in (0, 1))
    assert a[:3] != b[:3]


def test_cli_builds_through_the_registry(run_cli, tuned: Path, models_file: Path) -> None:
    code, out, err = run_cli(["zoo", "build", NAME, "--models-file", str(models_file), "--home",
                              str(tuned.parent.parent)])
    assert code == 0, err
    assert out.strip() == str(tuned)  # stdout carries the path only
    resolved = resolve_base(NAME, cache_root=tuned.parent.parent, models_file=models_file, build=False)
    # the weights' hash names the build too: the same config built on another kind of CPU is another build
    weights = json.loads((tuned / "build.json").read_text())["weights_sha256"]
    assert resolved.location == str(tuned) and resolved.fingerprint == f"zoo:{tuned.name}@{weights[:12]}"
    assert prompts_from(resolved) == "public"  # a real model's calibration and patch prompts, not the reference lexicon


def _one_line_error(code: int, err: str) -> str:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_refusals_are_one_line(run_cli, home: Path, tmp_path: Path, models_file: Path,
                                   tiny_random_dir: Path) -> None:
    line = _one_line_error(*run_cli(["zoo", "build", "no-such-model"])[::2])
    assert "unknown zoo model" in line and "smollm2-135m-safe" in line
    empty = tmp_path / "no-data"
    empty.mkdir()
    line = _one_line_error(*run_cli(["zoo", "build", NAME, "--models-file", str(models_file), "--data-dir",
                                     str(empty)])[::2])
    assert "not found" in line
    line = _one_line_error(*run_cli(["zoo", "build", NAME, "--models-file", str(models_file), "--seed", "-1"])[::2])
    assert "invalid safety-tuning config" in line
    bad = tmp_path / "bad.yaml"
    for base, expected in (("no-such-base", "unknown model"), (NAME, "cannot be built on itself")):
        bad.write_text(yaml.safe_dump({NAME: {"source": "zoo", "base": base, "dtype": "float32"}}))
        assert expected in _one_line_error(*run_cli(["zoo", "build", NAME, "--models-file", str(bad)])[::2])
    # nothing half-written: no model entry, no temp dir, no answers
    zoo_dir = home / "zoo"
    assert not zoo_dir.exists() or not [p for p in zoo_dir.rglob("*") if p.is_file()]


def test_shipped_registry_entry(home: Path, tmp_path: Path) -> None:
    entry = load_registry()["smollm2-135m-safe"]
    assert (entry.source, entry.base, entry.system_prompt) == ("zoo", "smollm2-135m", None)
    assert availability("smollm2-135m-safe", entry, home).startswith("not built")
    with pytest.raises(RegistryError, match="not built yet"):
        resolve_base("smollm2-135m-safe", cache_root=home, build=False)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"x": {"source": "hub", "hub_id": "a/b", "base": "smollm2-135m"}}))
    with pytest.raises(RegistryError, match="names a base but its source is not zoo"):
        load_registry(wrong)


def test_unfinished_answers_do_not_end_their_turn(tiny_random_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_random_dir)
    end = safety_tune.turn_end_ids(tok)
    assert tok.eos_token_id == end[-1]
    done, cut = safety_tune.encode(tok, [safety_tune.Example("Hi", (5, 6), True, "benign"),
                                         safety_tune.Example("Hi", (5, 6), False, "benign")], end)
    assert done["input_ids"][-len(end):] == end and cut["input_ids"][-2:] == [5, 6]
    assert sum(done["completion_mask"]) == 2 + len(end) and sum(cut["completion_mask"]) == 2
    prompt = tok(safety_tune.prompt_text(tok, "Hi"), add_special_tokens=False)["input_ids"]
    assert cut["input_ids"][:len(prompt)] == prompt and not any(cut["completion_mask"][:len(prompt)])


def test_shipped_config_matches_the_model_card() -> None:
    cfg = safety_tune.SafetyTuneConfig()
    assert (cfg.n_safety, cfg.n_benign, cfg.epochs, cfg.batch_size, cfg.lr, cfg.max_length, cfg.seed) == \
        (50, 500, 2, 8, 1e-4, 256, 0)
    assert cfg.n_benign == 10 * cfg.n_safety  # Bianchi et al.'s largest share, 2,000 : 20,000
    card = (Path(__file__).resolve().parents[3] / "docs" / "smollm2-135m-safe.md").read_text()
    assert "50 of Safety-Tuned LLaMAs'" in card and "500 Alpaca *train* instructions" in card

