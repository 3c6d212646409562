"""The hand-written training requests: disjoint from every evaluation and dev set, and trained only when asked."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from qresafe_bench.harness import data as public_data
from qresafe_bench.harness.evaluate import task_utils
from qresafe_bench.harness.zoo import corpus as C
from qresafe_bench.harness.zoo import natural_dev as N
from qresafe_bench.harness.zoo.build import RefModelConfig, alpaca_split, stage_examples
from qresafe_bench.harness.zoo.natural_train import WRITTEN_BENIGN, WRITTEN_HARMFUL

TRAIN = WRITTEN_HARMFUL + WRITTEN_BENIGN


def _held_out(data_dir: str) -> dict[str, list[str]]:
    harmbench = Path(data_dir) / "harmbench" / "harmbench_behaviors_text_all.csv"
    return {
        "advbench": [r["prompt"] for r in public_data.advbench_prompts(data_dir)],
        "harmbench": [r["Behavior"] for r in csv.DictReader(harmbench.open())],
        "jbb": [d["prompt"] for d in task_utils("jbb").jbb_docs(data_dir)],
        "natural_dev": N.NATURAL_HARMFUL + N.NATURAL_BENIGN + N.INSTRUCTION_HARMFUL + N.INSTRUCTION_BENIGN
        + N.HARD_HARMFUL + N.HARD_BENIGN,
        "alpaca_val": public_data.alpaca_instructions("val", data_dir),
        "alpaca_dev": alpaca_split(data_dir)[1],
    }


def test_written_training_requests_share_no_6gram_and_no_near_copy_with_held_out_sets(data_dir: str) -> None:
    """Stricter than the corpus's 8-gram filter: a 6-gram, or half the words in common, is a near copy."""
    for name, texts in _held_out(data_dir).items():
        grams = C.Decontaminator(texts, n=6)
        words = [frozenset(C.normalise(t).split()) for t in texts]
        for t in TRAIN:
            assert grams.clean(t), (name, t)
            w = frozenset(C.normalise(t).split())
            assert all(len(w & s) < 0.5 * len(w | s) for s in words), (name, t)


def test_written_training_requests_have_no_duplicates_and_both_sides() -> None:
    assert len({C.normalise(t) for t in TRAIN}) == len(TRAIN)  # within and across the two lists
    assert len(WRITTEN_HARMFUL) >= 900 and len(WRITTEN_BENIGN) >= 900


def test_written_requests_train_only_when_asked_with_their_answers(data_dir: str) -> None:
    alpaca_train, _ = alpaca_split(data_dir)
    decon = C.Decontaminator([])
    off = stage_examples(RefModelConfig.micro(), 2, alpaca_train, decon)
    on = stage_examples(dataclasses.replace(RefModelConfig.micro(), s2_written=50), 2, alpaca_train, decon)
    assert len(on) == len(off) + 100
    assert not {u for _, u, _ in off} & set(TRAIN)  # off: the template corpus only
    # dressed or mixed requests still contain the written text; each side gets its own kind of answer
    harmful = [a for _, u, a in on if any(w in u for w in WRITTEN_HARMFUL)]
    benign = [a for _, u, a in on if any(w in u for w in WRITTEN_BENIGN)]
    assert len(harmful) >= 50 and len(benign) >= 50
    assert all(a in C.REFUSALS for a in harmful) and all(a in C.ALPACA_RESPONSES for a in benign)
    # stage 1 never sees them, so the base (and its compliance) is unchanged
    s1 = stage_examples(dataclasses.replace(RefModelConfig.micro(), s2_written=50), 1, alpaca_train, decon)
    assert not any(w in u for _, u, _ in s1 for w in WRITTEN_HARMFUL[:50])
