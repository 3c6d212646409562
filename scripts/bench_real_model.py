"""What the harness costs on a real model, as ratios: its hf backend against a bare batched `generate`, and the
evaluation of quantized variants against their full-precision model, on the same AdvBench prompts.

    python scripts/bench_real_model.py --model smollm2-135m --prompts 64
    python scripts/bench_real_model.py --model smollm2-135m --variants gptq:4:benign,rtn:8 --prompts 100

Both generation sides get the same prompts through the model's chat template, the same greedy decoding and
new-token budget, the same batch size and dtype; generated tokens are counted up to and including EOS. Every
evaluation runs in a fresh store (nothing is served from an earlier run); variants are quantized before the
timed region (their build is not counted). Patch against full-parameter DPO: scripts/bench_patch.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from qresafe_bench.harness.core.paths import cache_root


def bare_generate(model_dir: str, prompts: list[str], max_new_tokens: int,
                  batch_size: int) -> tuple[int, float, list[str]]:
    """Tokens, seconds (model load included, as in an eval) and texts of a plain left-padded batched
    `model.generate`, no harness in between."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    eos = {model.generation_config.eos_token_id} if isinstance(model.generation_config.eos_token_id, int) \
        else set(model.generation_config.eos_token_id or [])
    tokens, answers = 0, []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
            for row in out[:, batch["input_ids"].shape[1]:].tolist():
                length = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
                tokens += length
                answers.append(tokenizer.decode(row[:length], skip_special_tokens=True))
    return tokens, time.perf_counter() - started, answers


def harness_eval(spec, n: int, max_new_tokens: int, batch_size: int, data_dir: str | None) -> tuple[float, list[str]]:
    """Seconds and texts of `run_eval` on AdvBench's first n prompts. Its store is fresh (no stored generation
    can serve it) but links the built models, so nothing is converted or quantized inside the timed region."""
    from qresafe_bench.harness.generation.backends import BackendSettings
    from qresafe_bench.harness.runs.evaluate import EvalRequest, run_eval

    with tempfile.TemporaryDirectory() as fresh:
        home = Path(fresh)
        for built in ("packages", "variants", "zoo", "calibration"):
            if (cache_root() / built).exists():
                (home / built).symlink_to(cache_root() / built)
        request = EvalRequest(spec=spec, tasks=("advbench",), limit=n, max_new_tokens=max_new_tokens,
                              backend=BackendSettings(batch_size=batch_size), data_dir=data_dir)
        started = time.perf_counter()
        outcome = run_eval(request, home=home, log=lambda _: None)
        seconds = time.perf_counter() - started
        lines = (Path(outcome.run_dir) / "samples.jsonl").read_text().splitlines()
        by_doc: dict[int, str] = {}
        for sample in (json.loads(line) for line in lines if line.strip()):
            by_doc.setdefault(sample["doc_id"], sample["output"])  # one answer per prompt
        return seconds, [by_doc[d] for d in sorted(by_doc)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--variants", default="gptq:4:benign,rtn:8", help="method:bits[:tier], comma-separated")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.harness.data.catalogue import advbench_prompts, data_dir_from_env
    from qresafe_bench.harness.models.registry import resolve

    data_dir = args.data_dir or (str(data_dir_from_env()) if data_dir_from_env() else None)
    prompts = [row["prompt"] for row in advbench_prompts(data_dir)[:args.prompts]]
    full = VariantSpec(model=args.model)
    base = resolve(full, cache_root=cache_root(), data_dir=data_dir)
    variants = []
    for item in filter(None, args.variants.split(",")):
        method, bits, *tier = item.split(":")
        spec = VariantSpec(model=args.model, quant=method, bits=int(bits), calib=tier[0] if tier else "none")
        resolve(spec, cache_root=cache_root(), data_dir=data_dir)  # built here, outside the timed region
        variants.append(spec)

    tokens, bare_seconds, bare_texts = bare_generate(base.location, prompts, args.max_new_tokens, args.batch_size)
    timed = {full.slug: harness_eval(full, args.prompts, args.max_new_tokens, args.batch_size, data_dir)}
    for spec in variants:
        timed[spec.slug] = harness_eval(spec, args.prompts, args.max_new_tokens, args.batch_size, data_dir)
    same = sum(a.strip() == b.strip() for a, b in zip(bare_texts, timed[full.slug][1], strict=True))
    print(f"model {args.model}, {args.prompts} AdvBench prompts, greedy, {args.max_new_tokens} new tokens max, "
          f"batch {args.batch_size}; model load included on both sides")
    print(f"greedy parity: {same} of {len(prompts)} answers identical (the same tokens on both sides)")
    print(f"{'run':44} {'seconds':>8} {'tokens/s':>9}")
    print(f"{'bare model.generate (' + str(tokens) + ' tokens)':44} {bare_seconds:8.1f} {tokens / bare_seconds:9.1f}")
    fp_seconds = timed[full.slug][0]
    print(f"{'qresafe-bench eval ' + full.slug:44} {fp_seconds:8.1f} {tokens / fp_seconds:9.1f}")
    for spec in variants:
        print(f"{'qresafe-bench eval ' + spec.slug:44} {timed[spec.slug][0]:8.1f}")
    print(f"hf backend / bare generate, tokens/s: {bare_seconds / fp_seconds:.2f}")
    for spec in variants:
        print(f"eval wall time {spec.slug} / full precision: {timed[spec.slug][0] / fp_seconds:.2f}")


if __name__ == "__main__":
    main()
