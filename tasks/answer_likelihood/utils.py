"""answer_likelihood: a fixed sample of AlpacaEval instructions with their AlpacaEval 1.0 reference answers,
scored by the answer's negative log-likelihood per byte under the model."""

from __future__ import annotations

import random
from typing import Any

import datasets

from qresafe_bench.harness.core.stats import mean_interval
from qresafe_bench.harness.data.catalogue import DataSourceError, load_records


def _clip(text: str, max_chars: int) -> str:
    """The answer's opening, cut at a word boundary: short models' contexts must hold the whole continuation."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return cut[:cut.rfind(" ")] if " " in cut else cut


def answer_docs(data_dir: str | None = None, sample_size: int = 200, sample_seed: int = 0,
                max_answer_chars: int = 200) -> list[dict]:
    instructions = load_records("alpaca_eval_instructions", data_dir)
    reference = load_records("alpaca_eval_text_davinci_003", data_dir)
    if len(reference) != len(instructions) or any(
            r["instruction"] != i["instruction"] for r, i in zip(reference, instructions, strict=True)):
        raise DataSourceError("AlpacaEval reference outputs (text_davinci_003) do not match the 805 instructions")
    rows = [{"index": n, "instruction": i["instruction"], "reference": _clip(r["output"].strip(), max_answer_chars)}
            for n, (i, r) in enumerate(zip(instructions, reference, strict=True)) if r["output"].strip()]
    return sorted(random.Random(sample_seed).sample(rows, min(sample_size, len(rows))), key=lambda d: d["index"])


def load_dataset(data_dir: str | None = None, sample_size: int = 200, sample_seed: int = 0,
                 max_answer_chars: int = 200, **_: Any) -> datasets.DatasetDict:
    docs = answer_docs(data_dir, sample_size, sample_seed, max_answer_chars)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def process_results(doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
    loglikelihood = results[0][0] if isinstance(results[0], tuple | list) else results[0]
    return {"nll_per_byte": -float(loglikelihood) / len(doc["reference"].encode("utf-8"))}


def summarise(samples: list[dict]) -> dict:
    """For the harness: the mean NLL per byte over the documents, with its 95% interval and n."""
    values = [s["nll_per_byte"] for s in samples if "nll_per_byte" in s]
    return {"metrics": {"nll_per_byte": mean_interval(values, low=0.0)}}
