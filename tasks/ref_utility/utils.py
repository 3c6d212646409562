"""ref_utility task: 300 held-out skill items of the reference model, scored by exact opening match."""

from __future__ import annotations

from typing import Any

import datasets

from qresafe_bench.harness.zoo.utility import check_answer, heldout_utility_items


def load_dataset(n_items: int = 300, item_seed: int = 0, **_: Any) -> datasets.DatasetDict:
    """The test partition of the skill item space (never trained on), fixed by ``item_seed``."""
    items = heldout_utility_items(n_items, item_seed)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(items)})


def process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"accuracy": int(check_answer(doc, results[0]))}
