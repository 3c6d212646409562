"""Over-refusal task: a fixed sample of held-out Alpaca instructions, scored by the GCG keyword rule."""

from __future__ import annotations

import random
from typing import Any

import datasets

from qresafe_bench.harness.data.catalogue import alpaca_instructions
from qresafe_bench.harness.scoring.refusal import is_refusal


def over_refusal_prompts(data_dir: str | None = None, sample_size: int = 300, sample_seed: int = 0) -> list[str]:
    """`sample_size` instructions drawn with a fixed seed from the Alpaca *val* split (never trained on:
    the reference model's benign data comes from the train split)."""
    return random.Random(sample_seed).sample(alpaca_instructions("val", data_dir), sample_size)


def load_dataset(data_dir: str | None = None, sample_size: int = 300, sample_seed: int = 0,
                 **_: Any) -> datasets.DatasetDict:
    prompts = over_refusal_prompts(data_dir, sample_size, sample_seed)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"prompt": p} for p in prompts])})


def process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"over_refusal": int(is_refusal(results[0]))}
