"""HarmBench standard behaviours: data and the per-response scorer."""

from __future__ import annotations

from typing import Any

import datasets

from qresafe_bench.harness import judges
from qresafe_bench.harness.data.catalogue import DataSourceError, load_records


def harmbench_standard(data_dir: str | None = None, split: str = "test") -> list[dict[str, str]]:
    if split not in ("test", "val"):
        raise DataSourceError(f"harmbench split must be test or val, got {split!r}")
    rows = load_records(f"harmbench_{split}", data_dir)
    try:
        return [{"prompt": r["Behavior"], "behavior_id": r["BehaviorID"], "category": r["SemanticCategory"]}
                for r in rows if r["FunctionalCategory"] == "standard"]
    except KeyError as exc:
        raise DataSourceError(f"harmbench file lacks column {exc}") from None


def load_dataset(data_dir: str | None = None, split: str = "test", **_: Any) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(harmbench_standard(data_dir, split))})


def process_results(doc: dict, results: list[str]) -> dict[str, int]:
    jailbroken, _ = judges.session().safety_verdict(doc["prompt"], results[0])
    if jailbroken is None:
        return {"judge_unparseable": 1}
    return {"asr": int(jailbroken), "judge_unparseable": 0}
