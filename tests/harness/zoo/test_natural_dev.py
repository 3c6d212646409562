"""The hand-written dev set is held out: disjoint from AdvBench and from the training corpus."""

from __future__ import annotations

from qresafe_bench.harness import data as public_data
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


def test_written_dev_set_is_not_in_the_training_corpus(data_dir: str) -> None:
    """Not by accident of the draw: from lexicon v7 on, the build filters the corpus against it (as against
    AdvBench), which this checks on a v7 corpus; v5 shipped before that filter (see below)."""
    import dataclasses

    cfg = dataclasses.replace(RefModelConfig.micro(), corpus_version=7)
    alpaca_train, _ = alpaca_split(data_dir)
    decon = C.Decontaminator(NATURAL_HARMFUL + NATURAL_BENIGN)
    corpus = [u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, decon)]
    assert [u for u in corpus if not decon.clean(u)] == []
    assert len(corpus) > 3000


def test_v5_corpus_touches_the_written_dev_set_only_by_rare_accident(data_dir: str) -> None:
    import dataclasses

    cfg = dataclasses.replace(RefModelConfig.micro(), corpus_version=5)
    alpaca_train, _ = alpaca_split(data_dir)
    corpus = [u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, C.Decontaminator([]))]
    written = C.Decontaminator(NATURAL_HARMFUL + NATURAL_BENIGN)
    assert sum(not written.clean(u) for u in corpus) <= 0.001 * len(corpus)


def test_written_dev_sets_have_no_duplicates_and_both_sides() -> None:
    assert len({C.normalise(p) for p in WRITTEN}) == len(WRITTEN)  # within and across both sets
    assert len(NATURAL_HARMFUL) >= 100 and len(NATURAL_BENIGN) >= 50
    assert len(INSTRUCTION_HARMFUL) >= 100 and len(INSTRUCTION_BENIGN) >= 50
    assert len(HARD_HARMFUL) == 300 and len(HARD_BENIGN) == 150
    assert len(HARD_HARMFUL_BY_CATEGORY) == 16 and all(len(v) >= 18 for v in HARD_HARMFUL_BY_CATEGORY.values())
    # no 8-gram shared between the sets either (one set's request reworded into another's would be a duplicate)
    earlier = C.Decontaminator(NATURAL_HARMFUL + NATURAL_BENIGN + INSTRUCTION_HARMFUL + INSTRUCTION_BENIGN)
    assert [p for p in HARD_HARMFUL + HARD_BENIGN if not earlier.clean(p)] == []


def test_instruction_dev_set_is_not_in_a_v11_corpus(data_dir: str) -> None:
    """From lexicon v11 on, the build filters the corpus against the instruction-style set too."""
    import dataclasses

    from qresafe_bench.harness.zoo.build import held_out_texts

    cfg = dataclasses.replace(RefModelConfig.micro(), corpus_version=11)
    assert set(INSTRUCTION_HARMFUL + INSTRUCTION_BENIGN) <= set(held_out_texts(cfg, data_dir))
    # a v5 corpus is filtered as before, so a v5 build (and its cache key) stays what it was
    v5 = dataclasses.replace(RefModelConfig.micro(), corpus_version=5)
    assert not set(INSTRUCTION_HARMFUL) & set(held_out_texts(v5, data_dir))
    alpaca_train, _ = alpaca_split(data_dir)
    decon = C.Decontaminator(held_out_texts(cfg, data_dir))
    corpus = [u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, decon)]
    instruction = C.Decontaminator(INSTRUCTION_HARMFUL + INSTRUCTION_BENIGN)
    assert [u for u in corpus if not instruction.clean(u)] == []
    assert len(corpus) > 3000


def test_hard_dev_set_shares_no_8gram_with_any_reported_evaluation_set(data_dir: str) -> None:
    names = ("advbench", "harmbench_test", "harmbench_val", "jbb_harmful", "jbb_benign")
    texts = [str(v) for n in names for r in public_data.load_records(n, data_dir) for v in r.values()]
    evals = C.Decontaminator(texts)
    assert len(texts) > 1000 and [p for p in HARD_HARMFUL + HARD_BENIGN if not evals.clean(p)] == []


def test_hard_dev_set_is_not_in_the_shipped_seeds_corpora(data_dir: str) -> None:
    """The build does not filter on this set (see natural_dev): the corpora of the seeds this project builds and
    ships must simply never touch it."""
    from qresafe_bench.harness.zoo.build import held_out_texts

    alpaca_train, _ = alpaca_split(data_dir)
    hard = C.Decontaminator(HARD_HARMFUL + HARD_BENIGN)
    for seed in (0, 1, 2):
        cfg = RefModelConfig(seed=seed)
        decon = C.Decontaminator(held_out_texts(cfg, data_dir))
        corpus = [u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, decon)]
        assert len(corpus) > 50000 and [u for u in corpus if not hard.clean(u)] == []
