"""`qresafe-bench patch` end to end: a patched variant that `eval --patch` finds, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SMALL = ["--patch-tier", "direct", "--n-tier-prompts", "6", "--n-harmful-prompts", "6", "--steps", "3",
         "--train-batch-size", "4", "--max-new-tokens", "8", "--lora-r", "4"]


def _variants(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "variants").iterdir()) if (home / "variants").exists() else []


def test_patch_then_eval_the_patched_variant(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys) -> None:
    model = str(tiny_random_dir)
    code, out, err = run_cli(["patch", "--model", model, "--quant", "rtn", "--bits", "2", *SMALL,
                              "--learning-rate", "0.05", "--json", "--data-dir", str(data_dir)])
    assert code == 0, err
    report = json.loads(out)
    label = report["label"]
    assert label.startswith("qresafe-") and report["spec"]["patch"] == label
    assert report["pairs"] + report["pairs_dropped_equal"] == report["prompts"] == 12
    assert report["trainable_parameters"] > 0 and report["train_wall_seconds"] > 0 and report["peak_memory_mb"] > 0
    assert report["masks"]["identified_at_steps"] == [0] and 0.4 < report["masks"]["trainable_fraction"] < 0.8
    path = Path(report["path"])
    assert (path / "qresafe_patch.yaml").is_file() and (path / "unmerged_adapter").is_dir()
    assert json.loads((path / "config.json").read_text())["quantization_config"]["format"] == "pack-quantized"
    assert not any(name.startswith(".") for name in _variants(home))  # no temporary directory left behind

    # Repeating the command is answered from the store; the pair generations were stored too.
    code, out, err = run_cli(["patch", "--model", model, "--quant", "rtn", "--bits", "2", *SMALL,
                              "--learning-rate", "0.05", "--data-dir", str(data_dir)])
    assert code == 0 and out.strip() == str(path) and "found in the store" in err

    args = ["eval", "--model", model, "--quant", "rtn", "--bits", "2", "--patch", label, "--limit", "3",
            "--max-new-tokens", "4", "--json", "--data-dir", str(data_dir)]
    code, out, err = run_cli(args)
    assert code == 0, err
    results = json.loads(out)
    assert results["spec"]["patch"] == label and results["model"]["location"] == str(path)
    assert results["tasks"]["advbench"]["metrics"]["asr"]["n"] == 3


def test_the_paper_recipe_is_the_default_and_says_when_it_changes_nothing(run_cli, tiny_random_dir, home, data_dir,
                                                                          monkeypatch, capsys) -> None:
    code, out, _ = run_cli(["patch", "--help"])
    assert code == 0 and "--recipe" in out and "paper" in out
    # the paper's dose (lr 5e-6, one epoch) on a 2-bit grid: every update rounds away, and patch says so
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2",
                              "--n-tier-prompts", "12", "--max-new-tokens", "8", "--lora-r", "4", "--json",
                              "--data-dir", str(data_dir)])
    assert code == 0, err
    report = json.loads(out)
    used = report["hyperparameters"]
    assert used["recipe"] == "paper" and used["learning_rate"] == 5e-06 and used["epochs"] == 1.0
    assert used["patch_tier"] == "benign" and used["n_harmful_prompts"] == 0  # rtn has no calibration tier
    assert used["optimizer_steps"] == -(-report["pairs"] // 8) and used["lr_scheduler"] == "linear"
    assert (used["beta"], used["tau"], used["reidentify_every"], used["lora_r"]) == (0.01, 0.6, 1000, 4)
    assert (used["train_dtype"], used["gradient_checkpointing"]) == ("float32", False)  # CPU
    assert report["merge"]["changed"] == 0 and "every update rounds away" in report["changes_nothing"]
    assert sum("the patch changes nothing" in line for line in err.splitlines()) == 1
    assert report["label"] == "qresafe-ntier12-gen8-r4"


def test_keep_safety_critical_without_fine_tuning(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from qresafe_bench.qresafe.merge import dequantized_weights

    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2", *SMALL[:8],
                              "--keep-safety-critical", "0.1", "--json", "--data-dir", str(data_dir)])
    assert code == 0, err
    report = json.loads(out)
    assert report["label"].startswith("keep-critical-f0.1-") and report["trainable_parameters"] == 0
    path, quantized = Path(report["path"]), Path(report["quantized_variant"])
    weights = AutoModelForCausalLM.from_pretrained(path).state_dict()
    full = AutoModelForCausalLM.from_pretrained(tiny_random_dir).state_dict()
    sparse = load_file(path / "safety_critical.safetensors")
    for name, dense_q in dequantized_weights(quantized).items():
        saved = weights[f"{name}.weight"].flatten()
        kept = torch.zeros_like(saved, dtype=torch.bool)
        kept[sparse[f"{name}.indices"]] = True
        assert int(kept.sum()) == round(0.1 * saved.numel())
        assert torch.equal(saved[kept], full[f"{name}.weight"].flatten()[kept].half().float())
        assert torch.equal(saved[~kept], dense_q.flatten()[~kept])
    code, out, err = run_cli(["eval", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2", "--patch",
                              report["label"], "--limit", "2", "--max-new-tokens", "4", "--data-dir", str(data_dir)])
    assert code == 0, err


@pytest.mark.parametrize(("args", "message"), [
    (["--quant", "none"], "patching needs a quantized model"),
    (["--quant", "rtn", "--bits", "2", "--patch-tier", "spicy"], "unknown --patch-tier 'spicy'"),
    (["--quant", "bnb-nf4", "--bits", "4", "--method", "dpo-full"], "--method dpo-full needs an integer-grid"),
    (["--quant", "bnb-nf4", "--bits", "4", "--keep-safety-critical", "0.1"], "--keep-safety-critical needs an integer-grid"),
    (["--quant", "qlora", "--bits", "4", "--calib", "direct", "--method", "dpo-full"], "a LoRA adapter: use --method"),
    (["--quant", "aqlm", "--bits", "2", "--calib", "benign", "--keep-safety-critical", "0.1"], "no integer per weight"),
    (["--quant", "rtn", "--bits", "2", "--tau", "2"], "--tau must be in [0, 1]"),
    (["--quant", "rtn", "--bits", "2", "--rpo-alpha", "-1"], "--rpo-alpha must be >= 0"),
    (["--quant", "rtn", "--bits", "2", "--method", "sft", "--rpo-alpha", "1"], "--method sft has no DPO loss"),
])
def test_bad_inputs_are_one_line_and_write_nothing(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys, args,
                                                   message) -> None:
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), *args, "--data-dir", str(data_dir)])
    assert code == 1 and message in err and err.count("\n") == 1 and out == ""
    assert not home.exists() or not any(home.iterdir())


def test_empty_patch_set_is_one_line_and_leaves_no_variant(run_cli, tiny_random_dir, home, data_dir, monkeypatch,
                                                           capsys) -> None:
    from qresafe_bench.qresafe import patch

    monkeypatch.setattr(patch, "generate_responses", lambda model, spec, prompts, **_: ["same answer"] * len(prompts))
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2", *SMALL,
                              "--data-dir", str(data_dir)])
    # Progress lines (quantizing, generating) come first; the error itself is one line, and the last.
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and lines[-1].startswith("error: the patch set is empty")
    assert sum(line.startswith("error") for line in lines) == 1 and "Traceback" not in err
    built = [name for name in _variants(home) if not name.endswith(".refused.json")]
    assert not any("qresafe" in name for name in built)  # only the quantized variant it patches
    assert len([name for name in _variants(home) if name.endswith(".refused.json")]) == 1

    # The refusal was decided by stored generations, so it is stored too: asked again, it answers at once.
    def no_generation(*args, **kwargs):
        raise AssertionError("a stored refusal generated again")

    monkeypatch.setattr(patch, "generate_responses", no_generation)
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2", *SMALL,
                              "--data-dir", str(data_dir)])
    assert code == 1 and out == "" and err.strip().splitlines()[-1] == lines[-1]


def test_eval_of_an_unbuilt_patch_says_how_to_build_it(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys) -> None:
    code, _, err = run_cli(["eval", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2", "--patch",
                            "qresafe", "--data-dir", str(data_dir)])
    assert code == 1 and "qresafe-bench patch" in err and err.count("\n") == 1


def test_patch_then_eval_end_to_end(run_cli, home, tiny_random_dir, data_dir, monkeypatch, capsys) -> None:
    """The whole path at test scale: patch a 2-bit variant, then evaluate it through the CLI. (A random
    model, not the micro reference model: at 2 bits the micro model answers its few prompts identically,
    so its patch set would be empty; a random model's answers move under quantization.)"""
    model = str(tiny_random_dir)
    code, out, err = run_cli(["patch", "--model", model, "--quant", "rtn", "--bits", "2",
                              "--n-tier-prompts", "16", "--n-harmful-prompts", "16", "--steps", "5",
                              "--json", "--data-dir", str(data_dir)])
    if code == 1 and "patch set is empty" in err:
        pytest.fail("the model answers identically at 2 bits: the test needs a model whose quantization matters")
    assert code == 0, err
    report = json.loads(out)
    assert report["merge"]["entries"] > 0 and report["pairs"] >= 1
    code, out, err = run_cli(["eval", "--model", model, "--quant", "rtn", "--bits", "2", "--patch",
                              report["label"], "--tasks", "advbench,ref_utility", "--limit", "4", "--json",
                              "--data-dir", str(data_dir)])
    assert code == 0, err
    assert json.loads(out)["tasks"]["ref_utility"]["metrics"]


def _patch_then_eval(run_cli, model: str, quant: list[str], data_dir) -> tuple[dict, dict]:
    code, out, err = run_cli(["patch", "--model", model, *quant, *SMALL, "--learning-rate", "0.05", "--json",
                              "--data-dir", str(data_dir)])
    assert code == 0, err
    report = json.loads(out)
    code, out, err = run_cli(["eval", "--model", model, *quant, "--patch", report["label"], "--limit", "4",
                              "--max-new-tokens", "4", "--json", "--data-dir", str(data_dir)])
    assert code == 0, err
    results = json.loads(out)
    assert results["model"]["location"] == report["path"] and results["tasks"]["advbench"]["metrics"]["asr"]["n"] == 4
    return report, results


def test_patch_a_qlora_variant_then_eval(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys) -> None:
    """qlora: the patch is concatenated onto the variant's adapter; eval serves the one adapter (peft=)."""
    report, results = _patch_then_eval(run_cli, str(tiny_random_dir),
                                       ["--quant", "qlora", "--bits", "4", "--calib", "direct"], data_dir)
    path = Path(report["path"])
    config = json.loads((path / "adapter" / "adapter_config.json").read_text())
    base_rank = json.loads((Path(report["quantized_variant"]) / "adapter" / "adapter_config.json").read_text())["r"]
    assert config["r"] == report["saved_adapter_rank"] == base_rank + report["lora_r"] == base_rank + 4
    assert report["base_adapter_rank"] == base_rank and (path / "patch_adapter" / "adapter_model.safetensors").is_file()
    assert not (path / "adapter" / "ref").exists() and 0 < report["masks"]["trainable_fraction"] < 1
    assert results["model"]["location"] == str(path)  # the loader applies path/adapter (variants.patched_variant)


def _tiny_llama_128(out: Path, tokenizer_dir: Path) -> Path:
    """1-layer Llama with 128-wide projections (AQLM codes groups of 8 inputs; 256-entry codebooks)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=0, eos_token_id=1, pad_token_id=2)).save_pretrained(out)
    return out


def test_patch_an_aqlm_variant_then_eval(run_cli, tiny_random_dir, tmp_path, home, data_dir, monkeypatch, capsys) -> None:
    """aqlm: the patch is a LoRA adapter on the AQLM base, trained through aqlm's CPU kernel."""
    pytest.importorskip("aqlm")
    pytest.importorskip("numba")
    model = _tiny_llama_128(tmp_path / "llama128", tiny_random_dir)
    report, results = _patch_then_eval(run_cli, str(model), ["--quant", "aqlm", "--bits", "2", "--calib", "benign"],
                                       data_dir)
    path = Path(report["path"])
    assert report["saved_as"].startswith("PEFT adapter") and (path / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((path / "config.json").read_text())["quantization_config"]["quant_method"] == "aqlm"
    assert report["masks"]["identified_at_steps"] == [0] and report["trainable_parameters"] > 0


def test_patch_with_dev_checks_keeps_a_checked_step(run_cli, tiny_random_dir, home, data_dir, monkeypatch, capsys) -> None:
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2", *SMALL,
                              "--learning-rate", "0.05", "--check-every", "1", "--json", "--data-dir", str(data_dir)])
    assert code == 0, err
    report = json.loads(out)
    checks = report["dev_checks"]
    assert report["label"].endswith("-check1") and checks["every"] == 1 and checks["full_precision"]["step"] == -1
    # not the reference model: utility is minus the NLL per byte of the full-precision model's own answers
    assert checks["utility_kind"] == "likelihood" and checks["full_precision"]["utility"] < 0
    steps = [c["step"] for c in checks["history"]]
    assert steps[0] == 0 and steps == list(range(len(steps))) and checks["kept_step"] in steps
    assert report["steps"] == steps[-1]  # training ran up to the last check (stopped early or not)
    if checks["kept_step"] == 0:  # the unpatched grid was kept: nothing may have moved
        assert report["merge"]["changed"] == 0
