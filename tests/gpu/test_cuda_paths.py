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
    expected_dtype = "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float32"
    assert report["masks"]["train_dtype"] == expected_dtype and report["masks"]["gradient_checkpointing"] is True
    results = _eval(run_cli, tiny_random_dir, data_dir, "--quant", "rtn", "--bits", "2", "--patch", report["label"])
    assert results["tasks"]["advbench"]["metrics"]["asr"]["n"] == 4


def test_masked_patch_trains_in_bf16_with_checkpointing_on_cuda(tiny_random_dir, tmp_path) -> None:
    """On CUDA the config switches to bf16 autocast and non-reentrant gradient checkpointing (the caller's fp32
    flags notwithstanding); the LoRA factors, fp32 master weights, still get gradients through the recomputed
    layers, the masked rule holds, and the report says what ran."""
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from qresafe_bench.qresafe.trainer import MaskedDPOTrainer, QResafeConfig

    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bf16: the patch trains in fp32 there")
    args = QResafeConfig(output_dir=str(tmp_path / "trainer"), use_cpu=False, bf16=False, report_to="none",
                         save_strategy="no", disable_tqdm=True, seed=0, max_steps=2, per_device_train_batch_size=2,
                         learning_rate=5e-2, logging_steps=1, tau=0.5, max_length=64, dataloader_pin_memory=False)
    assert args.bf16 and args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    pairs = datasets.Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"Explain how item {i} works."}],
         "chosen": [{"role": "assistant", "content": "I cannot help with that request."}],
         "rejected": [{"role": "assistant", "content": f"Sure, here is how item {i} works."}]} for i in range(8)])
    model = AutoModelForCausalLM.from_pretrained(tiny_random_dir).to("cuda")
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                      task_type="CAUSAL_LM")
    trainer = MaskedDPOTrainer(model=model, args=args, train_dataset=pairs,
                               processing_class=AutoTokenizer.from_pretrained(tiny_random_dir), peft_config=lora)
    gradients: list[dict[str, float]] = []

    class RecordGradients(TrainerCallback):
        def on_pre_optimizer_step(self, *_args, **_kwargs):
            gradients.append({name: float(f.b.grad.abs().sum()) if f.b.grad is not None else 0.0
                              for name, f in trainer.factors.items()})

    trainer.add_callback(RecordGradients())
    outputs: list[torch.dtype] = []
    next(iter(trainer.factors.values())).module.base_layer.register_forward_hook(
        lambda _m, _a, out: outputs.append(out.dtype))
    trainer.train()

    assert trainer.model.get_base_model().is_gradient_checkpointing
    assert torch.bfloat16 in outputs  # the forward ran under bf16 autocast
    summary = trainer.mask_summary()
    assert summary["train_dtype"] == "bfloat16" and summary["gradient_checkpointing"] is True
    assert len(gradients) == 2
    for name, factor in trainer.factors.items():
        assert factor.a.dtype == factor.b.dtype == torch.float32 and factor.b.is_cuda
        if trainer.masks[name][1].any():  # B = 0 at the first step, so B is what the loss reaches first
            assert gradients[0][name] > 0, f"no LoRA gradient reached {name} through the checkpointed layers"
    assert any(torch.any(f.b) for f in trainer.factors.values())
