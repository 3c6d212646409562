"""The CUDA paths, on a CUDA device (`nox -s gpu`; skipped elsewhere): evaluation, quantize -> eval, SNIP scores
and the patch, each on the tiny random model so that a GPU runner finishes in minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu


def _eval(run_cli, model: Path, data_dir: Path, *extra: str) -> dict:
    code, out, err = run_cli(["eval", "--model", str(model), "--tasks", "advbench", "--limit", "4",
                              "--max-new-tokens", "8", "--device", "cuda", "--data-dir", str(data_dir), "--json",
                              *extra])
    assert code == 0, err
    return json.loads(out)


def test_eval_generates_on_cuda_and_matches_the_cpu_run_count(run_cli, tiny_random_dir, data_dir, home) -> None:
    results = _eval(run_cli, tiny_random_dir, data_dir)
    asr = results["tasks"]["advbench"]["metrics"]["asr"]
    assert asr["n"] == 4 and results["generated"] == 4


def test_quantize_then_eval_a_variant_on_cuda(run_cli, tiny_random_dir, data_dir, home) -> None:
    code, _, err = run_cli(["quantize", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "4",
                            "--data-dir", str(data_dir)])
    assert code == 0, err
    results = _eval(run_cli, tiny_random_dir, data_dir, "--quant", "rtn", "--bits", "4")
    assert results["tasks"]["advbench"]["metrics"]["asr"]["n"] == 4


def test_snip_scores_on_cuda_equal_the_cpu_scores(tiny_random_dir) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from qresafe_bench.qresafe import snip
    from qresafe_bench.qresafe.pairs import PatchPrompt, PreferencePair, tokenize_pairs

    tokenizer = AutoTokenizer.from_pretrained(tiny_random_dir)
    pairs = [PreferencePair(PatchPrompt(({"role": "user", "content": f"List colour {i}."},), "benign"),
                            "Red and blue.", f"Sure, colour {i}.") for i in range(3)]
    collate = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    batches = [collate([e]) for e in tokenize_pairs(tokenizer, pairs, 64)]
    scores = {}
    for device in ("cpu", "cuda"):
        model = AutoModelForCausalLM.from_pretrained(tiny_random_dir).to(device)
        layers = snip.adapted_layers(model, ["q_proj", "down_proj"])
        torch.manual_seed(1)
        # the full-precision weights stay on the host, as in the patch: the scores must stream them per layer
        full_precision = {n: (m.weight.detach() + 0.01 * torch.randn_like(m.weight)).cpu() for n, m in layers.items()}
        moved = [{k: v.to(device) for k, v in b.items()} for b in batches]
        scores[device] = snip.safety_scores(model, moved, layers, full_precision, loss="dpo", beta=0.5)
    for name, cpu in scores["cpu"].items():
        assert scores["cuda"][name].device.type == "cuda"
        torch.testing.assert_close(scores["cuda"][name].cpu(), cpu, rtol=1e-3, atol=1e-6)


def test_patch_trains_on_cuda_and_the_patched_variant_evaluates(run_cli, tiny_random_dir, data_dir, home) -> None:
    code, out, err = run_cli(["patch", "--model", str(tiny_random_dir), "--quant", "rtn", "--bits", "2",
                              "--patch-tier", "direct", "--n-tier-prompts", "6", "--n-harmful-prompts", "6",
                              "--steps", "3", "--train-batch-size", "4", "--max-new-tokens", "8", "--lora-r", "4",
                              "--learning-rate", "0.05", "--device", "cuda", "--data-dir", str(data_dir), "--json"])
    assert code == 0, err
    report = json.loads(out)
    results = _eval(run_cli, tiny_random_dir, data_dir, "--quant", "rtn", "--bits", "2", "--patch", report["label"])
    assert results["tasks"]["advbench"]["metrics"]["asr"]["n"] == 4
