"""Tokens per second, HF vs vLLM, on the same AdvBench prompts: greedy, and sampled with n=4 per prompt.

    OMP_NUM_THREADS=1 python scripts/bench_backends.py --model /path/to/hf-dir --prompts 64
    python scripts/bench_backends.py --model /path/to/hf-dir --backends vllm   # one side only

Run it in an environment with vLLM (on CPU: the `vllm_cpu` nox session's, `.nox/vllm_cpu`). Both sides get
the same token ids (chat template applied to one user turn), the same new-token budget and stop rule (EOS),
the model in the same dtype. HF: `model.generate` per batch, left-padded, `num_return_sequences=4` for the
sampled run (temperature 1, top-p 1, top-k off: the decoding grid's neutral point). vLLM: one `generate` call
over all prompts (its scheduler batches), `n=4` for the sampled run. Counted: generated tokens up to and
including EOS. Engine start and model load are outside the timed region and printed separately.
"""

from __future__ import annotations

import argparse
import time


def _prompt_ids(model_dir: str, n: int, data_dir: str | None) -> tuple[object, list[list[int]]]:
    from transformers import AutoTokenizer

    from qresafe_bench.harness.data.catalogue import advbench_prompts

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [row["prompt"] for row in advbench_prompts(data_dir)[:n]]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    return tokenizer, [tokenizer(t, add_special_tokens=False).input_ids for t in texts]


def bench_hf(model_dir: str, ids: list[list[int]], tokenizer, max_new_tokens: int, batch_size: int,
             dtype: str) -> dict[str, tuple[int, float]]:
    import torch
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    print(f"hf   load: {time.perf_counter() - started:.1f} s")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    results = {}
    for label, kwargs in (("greedy", {"do_sample": False}),
                          ("sampled n=4", {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                                           "num_return_sequences": 4})):
        torch.manual_seed(0)
        tokens = 0
        started = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(ids), batch_size):
                batch = ids[i:i + batch_size]
                width = max(map(len, batch))
                input_ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch])
                mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch])
                out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                     pad_token_id=pad, **kwargs)[:, width:]
                tokens += sum(_count(row.tolist(), eos) for row in out)
        results[label] = (tokens, time.perf_counter() - started)
    return results


def bench_vllm(model_dir: str, ids: list[list[int]], max_new_tokens: int, dtype: str) -> dict[str, tuple[int, float]]:
    from vllm import SamplingParams, TokensPrompt

    from qresafe_bench.harness.generation.backends import BackendSettings, make_lm
    from qresafe_bench.harness.models.resolved import ResolvedModel

    started = time.perf_counter()
    lm = make_lm(ResolvedModel(name=model_dir, location=model_dir, source="local", dtype=dtype),
                 BackendSettings(name="vllm"))  # the harness's own engine args (and CPU workarounds)
    print(f"vllm engine start: {time.perf_counter() - started:.1f} s")
    prompts = [TokensPrompt(prompt_token_ids=i) for i in ids]
    results = {}
    for label, params in (("greedy", SamplingParams(temperature=0, max_tokens=max_new_tokens)),
                          ("sampled n=4", SamplingParams(temperature=1.0, top_p=1.0, top_k=0, n=4, seed=0,
                                                         max_tokens=max_new_tokens))):
        started = time.perf_counter()
        outs = lm.model.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - started
        results[label] = (sum(len(c.token_ids) for o in outs for c in o.outputs), elapsed)
    lm.model.llm_engine.engine_core.shutdown()
    return results


def _count(row: list[int], eos: set[int]) -> int:
    """Generated tokens up to and including the first EOS (the rest is padding)."""
    for index, token in enumerate(row):
        if token in eos:
            return index + 1
    return len(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a local Hugging Face model directory")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="hf only; vLLM schedules its own batches")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--backends", default="hf,vllm")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    from qresafe_bench.harness.data.catalogue import data_dir_from_env

    data_dir = args.data_dir or (str(data_dir_from_env()) if data_dir_from_env() else None)
    tokenizer, ids = _prompt_ids(args.model, args.prompts, data_dir)
    rows = {}
    for backend in args.backends.split(","):
        if backend == "hf":
            rows["hf"] = bench_hf(args.model, ids, tokenizer, args.max_new_tokens, args.batch_size, args.dtype)
        elif backend == "vllm":
            rows["vllm"] = bench_vllm(args.model, ids, args.max_new_tokens, args.dtype)
        else:
            raise SystemExit(f"unknown backend {backend!r}; use hf and/or vllm")
    print(f"model {args.model}, {len(ids)} AdvBench prompts, {args.max_new_tokens} new tokens max, {args.dtype}")
    print(f"{'backend':8} {'decoding':12} {'tokens':>8} {'seconds':>8} {'tokens/s':>9}")
    for backend, results in rows.items():
        for label, (tokens, seconds) in results.items():
            print(f"{backend:8} {label:12} {tokens:8d} {seconds:8.1f} {tokens / seconds:9.1f}")


if __name__ == "__main__":  # vLLM spawns workers: keep the guard
    main()
