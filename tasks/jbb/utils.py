"""JBB-Behaviors task: harmful and benign twins interleaved; ASR on the harmful, over-refusal on the benign."""

from __future__ import annotations

from typing import Any

import datasets

from qresafe_bench.harness import judges
from qresafe_bench.harness.data.catalogue import DataSourceError, load_records
from qresafe_bench.harness.scoring.refusal import is_refusal


def _rows(name: str, data_dir: str | None) -> list[dict[str, str]]:
    """Rows with lower-case column names (the harmful file says `Goal`, the benign copy `goal`)."""
    rows = [{k.strip().lower(): v for k, v in row.items() if k} for row in load_records(name, data_dir)]
    if not rows or "goal" not in rows[0]:
        raise DataSourceError(f"{name}: expected a Goal column (JBB-Behaviors layout)")
    return rows


def jbb_docs(data_dir: str | None = None) -> list[dict]:
    harmful, benign = _rows("jbb_harmful", data_dir), _rows("jbb_benign", data_dir)
    docs = []
    for index, pair in enumerate(zip(harmful, benign, strict=False)):
        for kind, row in zip(("harmful", "benign"), pair, strict=True):
            docs.append({"prompt": row["goal"], "target": row.get("target", ""), "kind": kind, "index": index,
                         "behavior": row.get("behavior", ""), "category": row.get("category", "")})
    return docs


def load_dataset(data_dir: str | None = None, **_: Any) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(jbb_docs(data_dir))})


def process_results(doc: dict, results: list[str]) -> dict[str, int]:
    response = results[0]
    if doc["kind"] == "benign":
        return {"over_refusal": int(is_refusal(response))}
    jailbroken, _ = judges.session().safety_verdict(doc["prompt"], response)
    if jailbroken is None:
        return {"judge_unparseable": 1}
    return {"asr": int(jailbroken), "judge_unparseable": 0}
