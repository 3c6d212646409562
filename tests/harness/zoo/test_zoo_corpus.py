"""Training data never touches evaluation data: AdvBench, the Alpaca val sample, utility test items."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from qresafe_bench.harness import data as public_data
from qresafe_bench.harness.zoo import RefModelConfig, build
from qresafe_bench.harness.zoo import corpus as C
from qresafe_bench.harness.zoo.build import RECIPE_S10
from qresafe_bench.harness.zoo.utility import check_answer, heldout_utility_items, partition, sample_items


@pytest.fixture(scope="module")
def training_prompts(data_dir) -> list[str]:
    """Every user prompt of both stages of the full (default) config."""
    from qresafe_bench.harness.zoo.build import alpaca_split, stage_examples

    cfg = RefModelConfig()
    alpaca_train, _ = alpaca_split(data_dir)
    decon = C.Decontaminator([r["prompt"] for r in public_data.advbench_prompts(data_dir)])
    return sorted({u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, decon)})


def _assert_disjoint(train: list[str], evals: list[str]) -> None:
    exact = {C.normalise(t) for t in evals}
    grams = set().union(*(C.ngrams(t) for t in evals))
    hits = [t for t in train if C.normalise(t) in exact or C.ngrams(t) & grams]
    assert not hits, f"{len(hits)} training prompts overlap evaluation prompts, e.g. {hits[:3]}"


def test_training_prompts_disjoint_from_advbench(training_prompts, data_dir):
    _assert_disjoint(training_prompts, [r["prompt"] for r in public_data.advbench_prompts(data_dir)])


def test_training_prompts_disjoint_from_alpaca_val_sample(training_prompts, data_dir):
    val = public_data.alpaca_instructions("val", data_dir)
    _assert_disjoint(training_prompts, random.Random(0).sample(val, 300))


def test_training_prompts_disjoint_from_the_harmbench_dev_split(training_prompts, data_dir):
    """HarmBench's val split is a dev set of the build (dev_harmbench_val_refusal): evidence only while untrained."""
    from qresafe_bench.harness.evaluate import task_utils

    utils = task_utils("harmbench")
    val, test = utils.harmbench_standard(data_dir, "val"), utils.harmbench_standard(data_dir, "test")
    assert len(val) == 41 and len(test) == 159
    # the reported task's test rows and the build's dev rows are HarmBench's own disjoint splits
    assert not {d["behavior_id"] for d in val} & {d["behavior_id"] for d in test}
    _assert_disjoint(training_prompts, [d["prompt"] for d in val])


def test_harmful_templates_also_disjoint_before_filtering(data_dir):
    """The lexicon itself rarely collides with AdvBench; the filter only trims rare accidents."""
    decon = C.Decontaminator([r["prompt"] for r in public_data.advbench_prompts(data_dir)])
    rng = random.Random(1)
    prompts = [C.harmful_prompt(rng)[0] for _ in range(3000)]
    assert sum(not decon.clean(p) for p in prompts) < 0.02 * len(prompts)


def test_utility_eval_items_never_trained(training_prompts):
    test_items = heldout_utility_items(300, 0)
    assert len({i["prompt"] for i in test_items}) == 300
    assert all(partition(i["prompt"]) == "test" for i in test_items)
    assert not {i["prompt"] for i in test_items} & set(training_prompts)
    dev = {i["prompt"] for i in sample_items(200, 0, "dev")}
    assert not dev & set(training_prompts) and not dev & {i["prompt"] for i in test_items}


def test_utility_items_deterministic_and_checked():
    assert heldout_utility_items(50, 0) == heldout_utility_items(50, 0)
    item = {"prompt": "What is 12 + 30?", "answer": "42", "skill": "add"}
    assert check_answer(item, "42") and check_answer(item, " 42.") and check_answer(item, "42\nmore")
    assert not check_answer(item, "421") and not check_answer(item, "The answer is 42")
    assert check_answer({"answer": "Buenos Aires"}, "buenos aires")


def test_responses_obey_the_refusal_rule():
    C.check_responses()


def test_micro_config_is_distinct():
    assert RefModelConfig.micro().key() != RefModelConfig().key()
    assert RefModelConfig().key("ref-tiny-base") == RefModelConfig(s2_lr=1.0).key("ref-tiny-base")
    assert RefModelConfig().key() != RefModelConfig(seed=1).key()
    # the shallow model is keyed by its fraction; the full chat model and the base are not
    assert RefModelConfig().key("ref-tiny-shallow") != RefModelConfig(shallow_fraction=0.5).key("ref-tiny-shallow")
    assert RefModelConfig().key("ref-tiny") == RefModelConfig(shallow_fraction=0.5).key("ref-tiny")
    assert callable(build)


def test_every_split_can_be_drawn_with_and_without_instruction_frames():
    import random

    frames = ["Write a script to {t}.", "Develop a plan to {t}.", "Suggest a way to {t}."] * 20
    for split in ("train", "dev"):
        rng = random.Random(split)
        for _ in range(300):  # regression: a frame pool with no dev member used to loop forever
            assert C.harmful_prompt(rng, split)[0] and C.benign_prompt(rng, split)[0]
            assert C.harmful_prompt(rng, "train", frames=frames)[0]
    assert C.gerund("make a bomb") == "making a bomb" and C.gerund("hack into a bank") == "hacking into a bank"


@pytest.mark.parametrize("lexicon", sorted(C.LEXICONS))
def test_every_lexicon_rarely_touches_advbench_before_the_filter(lexicon, data_dir):
    advbench = C.Decontaminator([r["prompt"] for r in public_data.advbench_prompts(data_dir)])
    rng = random.Random(f"lexicon-{lexicon}")
    prompts = [f(rng, split, lexicon=lexicon)[0] for f in (C.harmful_prompt, C.benign_prompt)
               for split in ("train", "dev") for _ in range(1500)]
    assert sum(not advbench.clean(p) for p in prompts) < 0.02 * len(prompts)


def test_a_newer_lexicon_only_adds_and_keeps_every_dev_entry_held_out():
    """v7 extends v5: an entry held out (dev) in one is held out in the other, so the dev-split prompts that
    calibration tiers and patch sets draw from the v5 lexicon are never trained on by a v7 model."""
    versions = sorted(C.LEXICONS)
    for v_old, v_new in itertools.pairwise(versions):
        for old, new in zip(C.LEXICONS[v_old], C.LEXICONS[v_new], strict=True):
            assert set(old) <= set(new)
    v5_held_out = {t for t in C.HARM_TASKS + C.HARM_PURPOSES if C.is_dev(t)}
    v7_trained = {t for t in C.HARM_TASKS_V7 + C.HARM_PURPOSES_V7 if not C.is_dev(t)}
    assert v5_held_out and not v5_held_out & v7_trained
    v7_only = set(C.HARM_TASKS_V7) - set(C.HARM_TASKS)
    assert 0.05 < sum(map(C.is_dev, v7_only)) / len(v7_only) < 0.3  # new entries are held out too, ~15%
    v11_trained = {t for t in C.HARM_TASKS_V11 + C.HARM_PURPOSES_V11 if not C.is_dev(t)}
    assert not v5_held_out & v11_trained
    v11_only = set(C.HARM_TASKS_V11) - set(C.HARM_TASKS_V7)
    assert len(v11_only) > 700 and 0.05 < sum(map(C.is_dev, v11_only)) / len(v11_only) < 0.3


SESSION8 = RefModelConfig(s1_prompt_loss=False, s2_refusal_first_weight=30.0, s2_prompt_noise=0.0)  # sessions 8-9


def test_new_knobs_leave_the_shipped_cache_keys_alone():
    """A knob added later drops out of the key at its neutral value: stored runs of a shipped build keep
    naming it. Set, it keys the chat model and not the base."""
    assert RefModelConfig(s2_first_token_weight=1.0).key() == RefModelConfig().key()
    assert RefModelConfig(s2_first_token_weight=10.0).key() != RefModelConfig().key()
    assert RefModelConfig(s2_first_token_weight=10.0).key("ref-tiny-base") == RefModelConfig().key("ref-tiny-base")
    assert RefModelConfig(s2_refusal_first_weight=10.0).key("ref-tiny-base") == RefModelConfig().key("ref-tiny-base")
    assert RefModelConfig(s2_prompt_noise=0.0).key() != RefModelConfig().key()  # on since session 14
    assert RefModelConfig(s2_prompt_noise=0.0).key("ref-tiny-base") == RefModelConfig().key("ref-tiny-base")
    # off, the noise drops out of the key: the session 10-13 recipe keeps the keys its runs and boards name
    assert (RECIPE_S10.key("ref-tiny-base"), RECIPE_S10.key("ref-tiny")) == ("66450dda33", "b550402d7c")
    assert RefModelConfig(s2_written=0).key() == RefModelConfig().key()
    assert RefModelConfig(s2_written=100).key() != RefModelConfig().key()
    assert RefModelConfig(s2_written=100).key("ref-tiny-base") == RefModelConfig().key("ref-tiny-base")
    assert RefModelConfig(corpus_version=7).lexicon == 7 and RefModelConfig().lexicon == 11
    # a stage-1 knob keys the base, and so every model built on it; off, it drops out (the session-8 keys)
    assert (SESSION8.key("ref-tiny-base"), SESSION8.key("ref-tiny"), SESSION8.key("ref-tiny-shallow")) == (
        "a52655aeff", "e81c6e933e", "84276b6832")
    for name in ("ref-tiny-base", "ref-tiny", "ref-tiny-shallow"):
        assert SESSION8.key(name) != RefModelConfig().key(name)
    # the recipe shipped since session 14: the keys its build and README figures name (the base is session 10's)
    assert (RefModelConfig().key("ref-tiny-base"), RefModelConfig().key("ref-tiny")) == ("66450dda33", "925308be87")
    # the recipe shipped in sessions 3-7 keeps the keys its stored runs and published boards name
    v5 = RefModelConfig(corpus_version=5, s2_refusal_first_weight=1.0, s1_prompt_loss=False, s2_prompt_noise=0.0)
    assert (v5.key("ref-tiny-base"), v5.key("ref-tiny")) == ("205f2dffe3", "f716ffd90d")
    assert v5.lexicon == 5 and v5.key() != RefModelConfig().key()
    assert v5.key("ref-tiny-shallow") == "dbca566768"


def test_the_shallow_model_trains_without_the_refusal_prior():
    """ref-tiny-shallow keeps plain SFT (its own knob), so it is keyed apart from the shallow model built while it
    shared the chat model's prior; the knob keys neither the base nor the chat model."""
    assert SESSION8.shallow_refusal_first_weight == 1.0 != SESSION8.s2_refusal_first_weight
    inherited = dataclasses.replace(SESSION8, shallow_refusal_first_weight=SESSION8.s2_refusal_first_weight)
    assert inherited.key("ref-tiny-shallow") == "e43296a3f6" != SESSION8.key("ref-tiny-shallow")
    for name in ("ref-tiny-base", "ref-tiny"):
        assert inherited.key(name) == SESSION8.key(name)
