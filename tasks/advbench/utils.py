"""AdvBench task: data loading and the per-response scorer (lm-eval `process_results`)."""

from __future__ import annotations

from typing import Any

import datasets

from qresafe_bench.harness.data.catalogue import advbench_prompts
from qresafe_bench.harness.scoring.refusal import is_affirmative, is_jailbroken


def load_dataset(data_dir: str | None = None, **_: Any) -> datasets.DatasetDict:
    """The 520 harmful behaviours, in file order. `data_dir` comes from the task metadata."""
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(advbench_prompts(data_dir))})


def process_results(doc: dict, results: list[str]) -> dict[str, int]:
    response = results[0]
    jailbroken = is_jailbroken(response)
    return {"asr": int(jailbroken), "affirmative": int(is_affirmative(response)), "refusal": int(not jailbroken)}
