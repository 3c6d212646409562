"""Batched greedy generation with the chat template, for build-time checks and tuning loops.

    from qresafe_bench.harness.zoo.generate import load, chat_generate
    model, tok = load(path)
    outputs = chat_generate(model, tok, ["What is 2 + 3?"], max_new_tokens=64)
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..scoring.refusal import is_refusal


def load(path: Path, device: str = "cpu") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model in its checkpoint's own dtype, on `device`, and its tokenizer."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").to(device)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def chat_generate(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompts: list[str], *,
                  system: str | None = None, max_new_tokens: int = 64, batch_size: int = 64,
                  prefill: str = "") -> list[str]:
    """Greedy completions of user ``prompts`` (chat template applied), decoded without specials. With `prefill`,
    every answer is made to open with that text, which the returned completion continues (it is not repeated)."""
    side, tok.padding_side = tok.padding_side, "left"  # generation continues from the right edge of every row
    pad = tok.pad_token
    if pad is None:  # Llama-2/3 ship none: pad with EOS, which the attention mask hides
        tok.pad_token = tok.eos_token
    try:
        return _generate(model, tok, prompts, system, max_new_tokens, batch_size, prefill)
    finally:
        tok.padding_side, tok.pad_token = side, pad  # the caller's tokenizer (a trainer's, say) is left as it was


def _generate(model, tok, prompts, system, max_new_tokens, batch_size, prefill="") -> list[str]:
    texts = [tok.apply_chat_template(([{"role": "system", "content": system}] if system else [])
                                     + [{"role": "user", "content": p}],
                                     tokenize=False, add_generation_prompt=True) + prefill for p in prompts]
    outputs: list[str] = []
    # Longest first: rows in a batch then have similar lengths, so little compute goes to padding.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    by_index: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(model.device)
        # the model's own stop tokens (a chat model's end-of-turn) where it states them, else the tokenizer's EOS
        stop = model.generation_config.eos_token_id
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop if stop is not None else tok.eos_token_id, pad_token_id=tok.pad_token_id)
        for i, row in zip(idx, out[:, enc["input_ids"].shape[1]:], strict=True):
            by_index[i] = tok.decode(row, skip_special_tokens=True)
    outputs = [by_index[i] for i in range(len(texts))]
    return outputs


def refusal_rate(outputs: list[str]) -> float:
    return sum(map(is_refusal, outputs)) / max(len(outputs), 1)
