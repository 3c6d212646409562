"""Training data never touches evaluation data: AdvBench, the Alpaca val sample, utility test items."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random

import pytest

from qresafe_bench.harness.data import catalogue as public_data
from qresafe_bench.harness.zoo import RefModelConfig, build
from qresafe_bench.harness.zoo import corpus as C
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
    from qresafe_bench.harness.core.tasks import task_utils

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
        for _ in range(300):  # a frame pool with no dev member must not loop forever
            assert C.harmful_prompt(rng, split)[0] and C.benign_prompt(rng, split)[0]
            assert C.harmful_prompt(rng, "train", frames=frames)[0]
    assert C.gerund("make a bomb") == "making a bomb" and C.gerund("hack into a bank") == "hacking into a bank"


@pytest.mark.parametrize("lexicon", ["core", "full"])
def test_every_lexicon_rarely_touches_advbench_before_the_filter(lexicon, data_dir):
    advbench = C.Decontaminator([r["prompt"] for r in public_data.advbench_prompts(data_dir)])
    rng = random.Random(f"lexicon-{lexicon}")
    chosen = {"core": C.CORE_LEXICON, "full": C.FULL_LEXICON}[lexicon]
    prompts = [f(rng, split, lexicon=chosen)[0] for f in (C.harmful_prompt, C.benign_prompt)
               for split in ("train", "dev") for _ in range(1500)]
    assert sum(not advbench.clean(p) for p in prompts) < 0.02 * len(prompts)


def test_the_full_lexicon_contains_the_core_and_keeps_every_dev_entry_held_out():
    """The full lexicon extends the core: an entry held out (dev) in one is held out in the other, so the dev-split
    prompts that calibration tiers and patch sets draw from the core are never trained on by the reference model."""
    for core, full in zip(C.CORE_LEXICON, C.FULL_LEXICON, strict=True):
        assert full[:len(core)] == core and len(set(full)) == len(full)
    core_held_out = {t for t in C.CORE_LEXICON.harm_tasks + C.CORE_LEXICON.harm_purposes if C.is_dev(t)}
    full_trained = {t for t in C.FULL_LEXICON.harm_tasks + C.FULL_LEXICON.harm_purposes if not C.is_dev(t)}
    assert core_held_out and not core_held_out & full_trained
    extended = set(C.FULL_LEXICON.harm_tasks) - set(C.CORE_LEXICON.harm_tasks)
    assert len(extended) > 1000 and 0.05 < sum(map(C.is_dev, extended)) / len(extended) < 0.3  # held out too, ~15%


NAMES = ("ref-tiny-base", "ref-tiny", "ref-tiny-shallow")


def test_the_default_and_micro_builds_keep_their_cache_keys():
    """Stored runs, published boards and the README name these keys: a change to them is a new build."""
    assert tuple(RefModelConfig().key(n) for n in NAMES) == ("66450dda33", "925308be87", "e5c1857ad1")
    assert tuple(RefModelConfig.micro().key(n) for n in NAMES) == ("22f05151b2", "9849173769", "608b22d558")


def test_a_knob_at_its_off_value_is_left_out_of_the_key():
    cfg = RefModelConfig.micro()  # no prompt loss, no prompt noise
    fields = {k: v for k, v in dataclasses.asdict(cfg).items()
              if k not in ("s1_prompt_loss", "s2_prompt_noise") and not k.startswith("shallow_")}
    assert cfg.key("ref-tiny") == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    assert RefModelConfig(s2_prompt_noise=0.0).key() != RefModelConfig().key()
    assert RefModelConfig(s1_prompt_loss=False).key("ref-tiny-base") != RefModelConfig().key("ref-tiny-base")


def test_stage_two_knobs_key_the_chat_models_and_not_the_base():
    base = RefModelConfig().key("ref-tiny-base")
    for knob in ({"s2_refusal_first_weight": 30.0}, {"s2_prompt_noise": 0.0}, {"s2_epochs": 1}):
        cfg = RefModelConfig(**knob)
        assert cfg.key("ref-tiny-base") == base
        assert cfg.key("ref-tiny") != RefModelConfig().key("ref-tiny")
        assert cfg.key("ref-tiny-shallow") != RefModelConfig().key("ref-tiny-shallow")
    # a stage-1 knob keys the base, and so every model built on it
    for name in NAMES:
        assert RefModelConfig(s1_prompt_loss=False).key(name) != RefModelConfig().key(name)


def test_the_shallow_model_trains_without_the_refusal_prior():
    """ref-tiny-shallow keeps plain SFT (its own knob), which keys it and neither the base nor the chat model."""
    cfg = RefModelConfig()
    assert cfg.shallow_refusal_first_weight == 1.0 != cfg.s2_refusal_first_weight
    with_prior = dataclasses.replace(cfg, shallow_refusal_first_weight=cfg.s2_refusal_first_weight)
    assert with_prior.key("ref-tiny-shallow") != cfg.key("ref-tiny-shallow")
    for name in ("ref-tiny-base", "ref-tiny"):
        assert with_prior.key(name) == cfg.key(name)
