"""Micro builds: interface, cache layout, chat template, determinism, atomicity, verify()."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from qresafe_bench.harness.zoo import ZOO_MODELS, ZooError, build, built_path, verify
from qresafe_bench.harness.zoo.build import BUILD_FILES

# the module, not the `build` function that qresafe_bench.harness.zoo re-exports under the same name
build_module = importlib.import_module("qresafe_bench.harness.zoo.build")


def test_micro_build_layout(tmp_path, data_dir):
    # (Build time is reported by `qresafe-bench zoo build`, not asserted here.)
    path = build("ref-tiny", micro=True, cache_root=tmp_path, data_dir=data_dir, log=lambda _: None)
    assert path.parent == tmp_path / "zoo" and path.name.startswith("ref-tiny-")
    assert all((path / f).is_file() for f in BUILD_FILES)
    assert built_path("ref-tiny-base", micro=True, cache_root=tmp_path) is not None
    assert not [p for p in (tmp_path / "zoo").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_second_call_is_cached(micro_chat, micro_cache, data_dir, monkeypatch):
    monkeypatch.setattr(build_module, "train", lambda *a, **k: pytest.fail("cached model retrained"))
    again = build("ref-tiny", micro=True, cache_root=micro_cache, data_dir=data_dir, log=lambda _: None)
    assert again == micro_chat
    assert built_path("ref-tiny", micro=True, cache_root=micro_cache) == micro_chat
    assert built_path("ref-tiny", micro=True, seed=123, cache_root=micro_cache) is None


def test_unknown_name(tmp_path):
    with pytest.raises(ZooError, match="unknown zoo model"):
        build("ref-huge", cache_root=tmp_path)
    assert ZOO_MODELS == ("ref-tiny-base", "ref-tiny", "ref-tiny-shallow")


def test_loads_and_chat_template_round_trip(micro_chat):
    model = AutoModelForCausalLM.from_pretrained(micro_chat)
    tok = AutoTokenizer.from_pretrained(micro_chat)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|bos|><|system|>Be brief.<|user|>What is 2 + 3?<|assistant|>"
    no_sys = tok.apply_chat_template(msgs[1:], tokenize=False, add_generation_prompt=True)
    assert no_sys == "<|bos|><|user|>What is 2 + 3?<|assistant|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # specials are single tokens, text survives the round trip
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")
    assert model.generation_config.eos_token_id == tok.eos_token_id
    out = model.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False)
    new = out[0, len(ids):].tolist()
    assert tok.eos_token_id not in new[:-1]  # generation stops at eos (or at the length limit)


def test_deterministic_weights(tmp_path, data_dir):
    paths = [build("ref-tiny-base", micro=True, cache_root=tmp_path / d, data_dir=data_dir, log=lambda _: None)
             for d in ("a", "b")]
    a, b = (load_file(p / "model.safetensors") for p in paths)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (paths[0] / "tokenizer.json").read_bytes() == (paths[1] / "tokenizer.json").read_bytes()
    # build.json names the bytes and what they depend on besides the config (bytes differ across CPU kernels)
    metas = [json.loads((p / "build.json").read_text()) for p in paths]
    assert metas[0]["weights_sha256"] == metas[1]["weights_sha256"] == hashlib.sha256(
        (paths[0] / "model.safetensors").read_bytes()).hexdigest()
    assert metas[0]["environment"] == build_module.build_environment()
    assert metas[0]["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_interrupted_build_leaves_nothing(tmp_path, data_dir, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(build_module, "dev_metrics", boom)  # dies after the weights are written
    with pytest.raises(KeyboardInterrupt):
        build("ref-tiny-base", micro=True, cache_root=tmp_path, data_dir=data_dir, log=lambda _: None)
    assert list((tmp_path / "zoo").iterdir()) == []
    assert built_path("ref-tiny-base", micro=True, cache_root=tmp_path) is None


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_verify_reports_corrupt_entry(micro_chat, tmp_path, damage):
    copy = tmp_path / micro_chat.name
    shutil.copytree(micro_chat, copy)
    verify(copy)
    target = copy / "model.safetensors"
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(ZooError, match=r"corrupt cache entry at .*model\.safetensors.*delete it and build again"):
        verify(copy)


def test_first_token_weights_of_one_are_the_library_loss_and_a_row_weight_moves_it():
    """The weighted loss with every first-token weight 1 is transformers' own causal-LM loss; a row's larger
    weight (the refusal prior) counts that row's first response token more."""
    import random

    from transformers import LlamaConfig, LlamaForCausalLM

    from qresafe_bench.harness.zoo.build import RefModelConfig, _batches, weighted_loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    data = [([1, 5, 6, 7, 8, 9, 2], 3), ([1, 4, 4, 3, 2], 2), ([1, 9, 8, 7, 6, 5, 4, 3, 2], 5)]
    ids, mask, labels, first = next(_batches(data, RefModelConfig(batch_size=3), random.Random(0), pad=0))
    assert first.sum() == 3 and all(labels[r, first[r] > 0].item() != -100 for r in range(3))
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.allclose(weighted_loss(out.logits, labels, first), out.loss, atol=1e-6)
    # a row's own weight weights that row's first token alone
    rows = [d + (w,) for d, w in zip(data, (1.0, 4.0, 1.0), strict=True)]
    _, _, _, first_r = next(_batches(rows, RefModelConfig(batch_size=3), random.Random(0), pad=0))
    assert sorted(first_r[first_r > 0].tolist()) == [1.0, 1.0, 4.0]
    weighted = weighted_loss(out.logits, labels, first_r)
    assert not torch.allclose(weighted, out.loss, atol=1e-4)
    ce = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1),
                                           ignore_index=-100, reduction="none").view(3, -1)
    w = (labels[:, 1:] != -100).float()
    w[first_r[:, 1:] == 4.0] = 4.0  # the one token the weight names
    assert torch.allclose(weighted, (ce * w).sum() / w.sum(), atol=1e-6)


def test_prompt_noise_touches_only_flagged_prompts_within_the_vocab_range() -> None:
    """s2_prompt_noise: a flagged row's prompt tokens (ids in [lo, hi)) may change, its response and specials never;
    an unflagged row (a skill item) and noise 0 leave every token as it was."""
    import random

    from qresafe_bench.harness.zoo.build import RefModelConfig, _batches

    lo, hi = 6, 60
    prompt, response = [1, 4] + list(range(10, 40)) + [5], [41, 42, 43, 2]
    rows = [(prompt + response, len(prompt), 1.0, True), (prompt + response, len(prompt), 1.0, False)]
    cfg = RefModelConfig(batch_size=2)
    clean = next(_batches(rows, cfg, random.Random(0), pad=0))[0]
    assert clean[0].tolist() == clean[1].tolist() == prompt + response
    ids = next(_batches(rows, cfg, random.Random(0), pad=0, noise=0.5, vocab=(lo, hi)))[0]
    noisy, kept = (ids[0], ids[1]) if ids[0].tolist() != prompt + response else (ids[1], ids[0])
    assert kept.tolist() == prompt + response  # the unflagged row
    changed = [j for j, (a, b) in enumerate(zip(noisy.tolist(), prompt + response, strict=True)) if a != b]
    assert changed and all(2 <= j < len(prompt) - 1 for j in changed)  # bos, <|user|>, <|assistant|> stay
    assert noisy[len(prompt):].tolist() == response
    assert all(lo <= t < hi for t in noisy[2:len(prompt) - 1].tolist())
    assert 5 <= len(changed) <= 25  # about half of the 30 ordinary prompt tokens (binomial, p=0.5)


def test_other_test_metrics_read_every_jbb_and_harmbench_standard_row(micro_chat, data_dir):
    from qresafe_bench.harness.zoo.evaluate import other_test_metrics

    m = other_test_metrics(micro_chat, data_dir)
    assert (m["n_jbb"], m["n_harmbench"]) == (100, 159)  # JBB's 100 goals; HarmBench test's standard rows
    assert all(0.0 <= m[k] <= 1.0 for k in ("jbb_asr", "jbb_benign_refusal", "harmbench_standard_asr"))


@pytest.mark.parametrize("prompt_loss", [False, True])
def test_stage_one_prompt_loss_makes_the_request_a_target(prompt_loss, tmp_path, data_dir, monkeypatch):
    """s1_prompt_loss: stage 1's loss covers every token after bos (the request too); off, only the response."""
    import dataclasses

    seen = {}

    def capture(model, data, cfg, **kwargs):
        seen["data"] = data
        raise RuntimeError("captured")  # stop before training: only what it would train on is asked here

    cfg = dataclasses.replace(build_module.RefModelConfig.micro(), s1_prompt_loss=prompt_loss)
    monkeypatch.setattr(build_module, "_config", lambda micro, seed: cfg)
    monkeypatch.setattr(build_module, "train", capture)
    with pytest.raises(RuntimeError, match="captured"):
        build("ref-tiny-base", micro=True, cache_root=tmp_path, data_dir=data_dir, log=lambda _: None)
    starts = {plen for _, plen in seen["data"]}
    assert (starts == {1}) if prompt_loss else (min(starts) > 5)
    assert not (tmp_path / "zoo").exists() or not any((tmp_path / "zoo").iterdir())  # nothing half-written
