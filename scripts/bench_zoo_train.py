"""Benchmark: training throughput of the reference model, shipped step against faster candidates.

Prints tokens/s and the ratio to the shipped step for: the shipped step (transformers' loss over
logits at every position); logits only at response positions (the loss is the same sum: prompt
positions are masked out of it anyway, but the shipped step still pays the LM head for them); and
``torch.compile`` of the shipped step. Candidates change floating-point order, so a recipe that
adopts one gets new weights and a new cache key: this script says whether that is worth it.

    python scripts/bench_zoo_train.py --data-dir ../shared/data [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib
import random
import time

import torch

B = importlib.import_module("qresafe_bench.harness.zoo.build")  # the module (the package exports a function)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import LlamaConfig, LlamaForCausalLM

    from qresafe_bench.harness.zoo import corpus as C

    cfg = B.RefModelConfig()
    alpaca_train, _ = B.alpaca_split(a.data_dir)
    examples = B.stage_examples(cfg, 2, alpaca_train, C.Decontaminator([]))[:6000]
    tok = B.train_tokenizer(cfg, [u for _, u, _ in examples] + [r for _, _, r in examples])
    data = B.encode(tok, examples, cfg.max_len)
    batches = list(B._batches(data, cfg, random.Random(0), tok.pad_token_id))[:a.steps + 5]  # noqa: SLF001

    def fresh() -> LlamaForCausalLM:
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
            max_position_embeddings=2 * cfg.max_len + 64, tie_word_embeddings=True, pad_token_id=tok.pad_token_id))

    def shipped(model, ids, mask, labels):
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def response_only(model, ids, mask, labels):
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        target = labels[:, 1:]
        keep = target != -100
        logits = model.lm_head(hidden[keep])
        return torch.nn.functional.cross_entropy(logits, target[keep])

    def run(name: str, step_fn, compile_model: bool = False) -> float:
        model = fresh()
        fwd = torch.compile(model) if compile_model else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        tokens, t0 = 0, None
        for i, (ids, mask, labels, _first) in enumerate(batches):
            if i == 5:  # warm-up (and compilation) excluded
                t0, tokens = time.perf_counter(), 0
            loss = step_fn(fwd, ids, mask, labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(mask.sum())
        rate = tokens / (time.perf_counter() - t0)
        print(f"{name:28} {rate:8.0f} tok/s", flush=True)
        return rate

    base = run("shipped (HF loss)", shipped)
    for name, fn, comp in (("response-only logits", response_only, False),
                           ("torch.compile, HF loss", shipped, True)):
        try:
            print(f"{'':28} ratio to shipped: {run(name, fn, comp) / base:.2f}x")
        except Exception as exc:  # noqa: BLE001 (a candidate that cannot run here is reported, not fatal)
            print(f"{name:28} could not run: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")


if __name__ == "__main__":
    main()
