"""The hand-written dev set is held out: disjoint from AdvBench and from the training corpus."""

from __future__ import annotations

from qresafe_bench.harness import data as public_data
from qresafe_bench.harness.zoo import corpus as C
from qresafe_bench.harness.zoo.build import RefModelConfig, alpaca_split, stage_examples
from qresafe_bench.harness.zoo.natural_dev import NATURAL_BENIGN, NATURAL_HARMFUL


def test_written_dev_set_shares_no_8gram_with_advbench(data_dir: str) -> None:
    advbench = C.Decontaminator([r["prompt"] for r in public_data.advbench_prompts(data_dir)])
    assert [p for p in NATURAL_HARMFUL + NATURAL_BENIGN if not advbench.clean(p)] == []


def test_written_dev_set_is_not_in_the_training_corpus(data_dir: str) -> None:
    cfg = RefModelConfig.micro()
    alpaca_train, _ = alpaca_split(data_dir)
    corpus = [u for stage in (1, 2) for _, u, _ in stage_examples(cfg, stage, alpaca_train, C.Decontaminator([]))]
    written = C.Decontaminator(NATURAL_HARMFUL + NATURAL_BENIGN)
    assert [u for u in corpus if not written.clean(u)] == []


def test_written_dev_set_has_no_duplicates_and_both_sides() -> None:
    both = NATURAL_HARMFUL + NATURAL_BENIGN
    assert len({C.normalise(p) for p in both}) == len(both)
    assert len(NATURAL_HARMFUL) >= 100 and len(NATURAL_BENIGN) >= 50
