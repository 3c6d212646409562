"""Throughput of the decoding-attack sweep through the harness vs a bare batched `generate`.

    OMP_NUM_THREADS=1 python scripts/bench_decoding.py --model ref-tiny-micro --prompts 64
    python scripts/bench_decoding.py --model /path/to/hf-dir --grid reduced --batch-size 32

Both sides generate the same AdvBench prompts (chat template applied) under the same settings (greedy +
the grid, `--samples` per sampled setting), the same batch size and new-token budget, with the model in
the same dtype on the same device. The bare side is one `model.generate` call per (setting, batch),
left-padded, nothing else. The harness side is `run_eval` on a fresh, empty store: lm-eval's request
building and scoring, the StoreLM, one store append per generation (fsynced once per backend call).
Prints generations per second for each and the ratio harness/bare of wall time (goal: within 1.10).
Generation lengths can differ between the two only through sampling randomness; both stop at the same
token budget or EOS.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def bare_generate(model_dir: str, prompts: list[str], grid: str, samples: int, batch_size: int,
                  max_new_tokens: int, system_prompt: str | None, dtype: str) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qresafe_bench.harness.scoring.decoding import settings

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    chats = []
    for p in prompts:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": p}]
        chats.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    limit = getattr(model.config, "max_position_embeddings", 10**9) - max_new_tokens
    count = 0
    started = time.perf_counter()
    with torch.no_grad():
        for setting in settings(grid):
            kwargs = setting.gen_kwargs()
            for _ in range(1 if setting.knob == "greedy" else samples):
                for i in range(0, len(chats), batch_size):
                    enc = tokenizer(chats[i:i + batch_size], return_tensors="pt", padding=True,
                                    add_special_tokens=False)
                    enc = {k: v[:, -limit:] for k, v in enc.items()}
                    model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
                    count += enc["input_ids"].shape[0]
    return time.perf_counter() - started, count


def harness_generate(model: str, n_prompts: int, grid: str, samples: int, batch_size: int,
                     max_new_tokens: int, data_dir: str | None, models_file: str | None) -> tuple[float, int, object]:
    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.harness.generation.backends import BackendSettings
    from qresafe_bench.harness.runs.evaluate import EvalRequest, run_eval

    with tempfile.TemporaryDirectory(prefix="qresafe-bench-") as home:
        request = EvalRequest(spec=VariantSpec(model=model), tasks=("advbench_decoding",), limit=n_prompts,
                              max_new_tokens=max_new_tokens, backend=BackendSettings(batch_size=batch_size),
                              data_dir=data_dir, decoding_grid=grid, decoding_samples=samples)
        # Resolve (and build, for zoo names) outside the timed region, as the bare side loads outside it too.
        from qresafe_bench.harness.models import registry

        resolved = registry.resolve(request.spec, cache_root=_zoo_root(), data_dir=data_dir, models_file=models_file,
                                    log=lambda _: None)
        request = EvalRequest(**{**request.__dict__, "spec": VariantSpec(model=resolved.location)})
        started = time.perf_counter()
        outcome = run_eval(request, home=Path(home), models_file=models_file, log=lambda _: None)
        return time.perf_counter() - started, outcome.results["generated"], resolved


def _zoo_root() -> Path:
    from qresafe_bench.harness.core.paths import cache_root

    return cache_root()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ref-tiny-micro")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--grid", default="reduced")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--models-file", default=None)
    args = ap.parse_args()

    from qresafe_bench.harness.data.catalogue import advbench_prompts, data_dir_from_env

    data_dir = args.data_dir or (str(data_dir_from_env()) if data_dir_from_env() else None)
    # Harness first: it also resolves (builds, for zoo names) the model the bare side then loads.
    h_time, h_count, resolved = harness_generate(args.model, args.prompts, args.grid, args.samples, args.batch_size,
                                                 args.max_new_tokens, data_dir, args.models_file)
    prompts = [row["prompt"] for row in advbench_prompts(data_dir)[:args.prompts]]
    b_time, b_count = bare_generate(resolved.location, prompts, args.grid, args.samples, args.batch_size,
                                    args.max_new_tokens, None, "float32")  # a path, as the harness loads it
    print(f"model {args.model}, {args.prompts} prompts, grid {args.grid}, {args.samples} sample(s)/setting, "
          f"batch {args.batch_size}, {args.max_new_tokens} new tokens")
    print(f"bare generate : {b_count} generations in {b_time:.1f} s ({b_count / b_time:.1f}/s)")
    print(f"harness       : {h_count} generations in {h_time:.1f} s ({h_count / h_time:.1f}/s)")
    print(f"ratio harness/bare wall time: {h_time / b_time:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
