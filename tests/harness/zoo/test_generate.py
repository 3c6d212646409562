"""chat_generate serves any chat model: one without a pad token (Llama-2/3) generates, and is left as it was."""

from __future__ import annotations

from qresafe_bench.harness.zoo.generate import chat_generate, load


def test_a_tokenizer_without_a_pad_token_generates_and_is_left_unchanged(tiny_random_dir) -> None:
    model, tok = load(tiny_random_dir)
    with_pad = chat_generate(model, tok, ["List three colours.", "Hi"], max_new_tokens=4)
    tok.pad_token = None
    without_pad = chat_generate(model, tok, ["List three colours.", "Hi"], max_new_tokens=4)
    assert tok.pad_token is None  # the caller's tokenizer is left as it was
    assert len(without_pad) == 2 and without_pad == with_pad
