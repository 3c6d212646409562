"""The patch set: prompts disjoint from every evaluation set, responses through the run store, pair filtering."""

from __future__ import annotations

from pathlib import Path

import pytest

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.models.registry import resolve_base
from qresafe_bench.qresafe.config import PatchError, PatchRecipe
from qresafe_bench.qresafe.pairs import PatchPrompt, build_pairs, generate_responses, patch_prompts


def test_patch_prompts_are_disjoint_from_every_evaluation_set(data_dir: Path, tmp_path: Path, tiny_random_dir) -> None:
    from qresafe_bench.harness.data import catalogue as public_data
    from qresafe_bench.harness.data.calibration import evaluation_texts
    from qresafe_bench.harness.zoo.corpus import Decontaminator, normalise
    from qresafe_bench.harness.zoo.utility import heldout_utility_items

    recipe = PatchRecipe(patch_tier="direct", n_tier_prompts=30, n_harmful_prompts=30)
    prompts = patch_prompts(recipe, base_dir=tiny_random_dir, data_dir=str(data_dir), cache_dir=tmp_path,
                            log=lambda _: None)
    assert len(prompts) == 60 and {p.source for p in prompts} == {"direct", "harmful"}
    users = [m["content"] for p in prompts for m in p.messages if m["role"] == "user"]
    assert len(set(users)) == 60
    clean = Decontaminator(evaluation_texts(str(data_dir))).clean
    assert all(clean(u) for u in users)
    evaluation = {normalise(r["prompt"]) for r in public_data.advbench_prompts(str(data_dir))}
    evaluation |= {normalise(t) for t in public_data.alpaca_instructions("val", str(data_dir))}
    evaluation |= {normalise(i["prompt"]) for i in heldout_utility_items(300, 0)}
    assert not evaluation & {normalise(u) for u in users}
    again = patch_prompts(recipe, base_dir=tiny_random_dir, data_dir=str(data_dir), cache_dir=tmp_path,
                          log=lambda _: None)
    assert again == prompts  # seeded: the same patch set every time


def test_build_pairs_drops_pairs_without_signal() -> None:
    prompts = [PatchPrompt(({"role": "user", "content": f"q{i}"},), "benign") for i in range(3)]
    pairs, dropped = build_pairs(prompts, ["a", "b", "c"], ["a ", "x", "c"])
    assert dropped == 2 and [p.chosen for p in pairs] == ["b"] and pairs[0].rejected == "x"
    assert pairs[0].as_example()["chosen"] == [{"role": "assistant", "content": "b"}]
    with pytest.raises(PatchError, match="patch set is empty"):
        build_pairs(prompts, ["a", "b", "c"], ["a", "b", "c"])


def test_responses_go_through_the_run_store(tiny_random_dir: Path, home: Path, monkeypatch) -> None:
    from qresafe_bench.harness.generation import backends

    spec = VariantSpec(model=str(tiny_random_dir))
    model = resolve_base(str(tiny_random_dir), cache_root=home)
    prompts = [PatchPrompt(({"role": "user", "content": f"List {i} colours."},), "benign") for i in range(3)]
    first = generate_responses(model, spec, prompts, home=home, max_new_tokens=6)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    log = next((home / "generations").glob("*/hf.jsonl"))
    assert len(log.read_text().splitlines()) == 3

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was loaded although every response is stored")

    monkeypatch.setattr(backends, "make_lm", no_model)
    assert generate_responses(model, spec, prompts, home=home, max_new_tokens=6) == first
    # The stored context is what an eval of the same prompt builds (same chat template path).
    import json

    from transformers import AutoTokenizer

    contexts = [json.loads(line)["context"] for line in log.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(tiny_random_dir)
    assert tok.apply_chat_template([{"role": "user", "content": "List 0 colours."}], tokenize=False,
                                   add_generation_prompt=True) in contexts
