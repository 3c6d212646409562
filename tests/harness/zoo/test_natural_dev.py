"""The hand-written dev set is held out: disjoint from AdvBench and from the training corpus."""

from __future__ import annotations

from qresafe_bench.harness.data import catalogue as public_data
from qresafe_bench.harness.zoo import corpus as C
from qresafe_bench.harness.zoo.build import RefModelConfig, alpaca_split, stage_examples
from qresafe_bench.harness.zoo.natural_dev import (
    HARD_BENIGN,
    HARD_HARMFUL,
    HARD_HARMFUL_BY_CATEGORY,
    INSTRUCTION_BENIGN,
    INSTRUCTION_HARMFUL,
    NATURAL_BENIGN,
    NATURAL_HARMFUL,
)

WRITTEN = NATURAL_HARMFUL + NATURAL_BENIGN + INSTRUCTION_HARMFUL + INSTRUCTION_BENIGN + HARD_HARMFUL + HARD_BENIGN


def test_written_dev_set_shares_no_8gram_with_advbench(data_dir: str) -> None:
    advbench = C.Decontaminator([r["prompt"] for r in public_data.advbench_prompts(data_dir)])
    assert [p for p in WRITTEN if not advbench.clean(p)] == []


def test_the_build_keeps_the_free_form_and_instruction_sets_out_of_the_corpus(data_dir: str) -> None:
    """Not by accident of the draw: the build filters the corpus against both sets (as against AdvBench)."""
    from qresafe_bench.harness.zoo.build import held_out_texts

    cfg = RefModelConfig.micro()
    filtered = NATURAL_HARMFUL + NATURAL_BENIGN + INSTRUCTION_HARMFUL + INSTRUCTION_BENIGN
    assert set(filtered) <= set(held_out_texts(cfg, data_dir))
    alpaca_train, _ = alpaca_split(data_dir)
    decon = C.Decontaminator(held_out_texts(cfg, data_dir))
    corpus = [u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, decon)]
    for written in (NATURAL_HARMFUL + NATURAL_BENIGN, INSTRUCTION_HARMFUL + INSTRUCTION_BENIGN):
        check = C.Decontaminator(written)
        assert [u for u in corpus if not check.clean(u)] == []
    assert len(corpus) > 3000


def test_written_dev_sets_have_no_duplicates_and_both_sides() -> None:
    assert len({C.normalise(p) for p in WRITTEN}) == len(WRITTEN)  # within and across both sets
    assert len(NATURAL_HARMFUL) >= 100 and len(NATURAL_BENIGN) >= 50
    assert len(INSTRUCTION_HARMFUL) >= 100 and len(INSTRUCTION_BENIGN) >= 50
    assert len(HARD_HARMFUL) == 300 and len(HARD_BENIGN) == 150
    assert len(HARD_HARMFUL_BY_CATEGORY) == 16 and all(len(v) >= 18 for v in HARD_HARMFUL_BY_CATEGORY.values())
    # no 8-gram shared between the sets either (one set's request reworded into another's would be a duplicate)
    earlier = C.Decontaminator(NATURAL_HARMFUL + NATURAL_BENIGN + INSTRUCTION_HARMFUL + INSTRUCTION_BENIGN)
    assert [p for p in HARD_HARMFUL + HARD_BENIGN if not earlier.clean(p)] == []


def test_hard_dev_set_shares_no_8gram_with_any_reported_evaluation_set(data_dir: str) -> None:
    names = ("advbench", "harmbench_test", "harmbench_val", "jbb_harmful", "jbb_benign")
    texts = [str(v) for n in names for r in public_data.load_records(n, data_dir) for v in r.values()]
    evals = C.Decontaminator(texts)
    assert len(texts) > 1000 and [p for p in HARD_HARMFUL + HARD_BENIGN if not evals.clean(p)] == []


def test_hard_dev_set_is_not_in_the_shipped_seeds_corpora(data_dir: str) -> None:
    """The build does not filter on this set (see natural_dev): the corpora of the seeds this project builds
    must simply never touch it."""
    from qresafe_bench.harness.zoo.build import held_out_texts

    alpaca_train, _ = alpaca_split(data_dir)
    hard = C.Decontaminator(HARD_HARMFUL + HARD_BENIGN)
    for seed in (0, 1, 2):
        cfg = RefModelConfig(seed=seed)
        decon = C.Decontaminator(held_out_texts(cfg, data_dir))
        corpus = [u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, decon)]
        assert len(corpus) > 50000 and [u for u in corpus if not hard.clean(u)] == []
