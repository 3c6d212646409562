"""AlpacaEval: instructions with their reference outputs, the pairwise judgment, win rate and LC win rate."""

from __future__ import annotations

import hashlib
import logging
import sys
import types
from typing import Any

import datasets

from qresafe_bench.harness import judges
from qresafe_bench.harness.core.stats import wilson
from qresafe_bench.harness.data.catalogue import ALPACA_EVAL_REFERENCES as REFERENCES
from qresafe_bench.harness.data.catalogue import DataSourceError, load_records, resolve
from qresafe_bench.harness.judges.templates import alpaca_eval_prompt, parse_m_or_M

_STATE: dict[str, Any] = {}


def alpaca_eval_docs(data_dir: str | None = None, alpaca_reference: str = "gpt4_1106_preview") -> list[dict]:
    if alpaca_reference not in REFERENCES:
        raise DataSourceError(f"unknown AlpacaEval reference {alpaca_reference!r}; "
                              f"choose one of: {', '.join(REFERENCES)}")
    instructions = load_records("alpaca_eval_instructions", data_dir)
    reference = load_records(REFERENCES[alpaca_reference], data_dir)
    if len(reference) != len(instructions) or any(
            r["instruction"] != i["instruction"] for r, i in zip(reference, instructions, strict=True)):
        raise DataSourceError(f"AlpacaEval reference outputs ({alpaca_reference}) do not match the 805 instructions "
                              f"row by row")
    return [{"index": n, "instruction": i["instruction"], "dataset": i.get("dataset", ""),
             "reference": r["output"], "reference_generator": r.get("generator", alpaca_reference)}
            for n, (i, r) in enumerate(zip(instructions, reference, strict=True))]


def load_dataset(data_dir: str | None = None, alpaca_reference: str = "gpt4_1106_preview",
                 **_: Any) -> datasets.DatasetDict:
    _STATE["data_dir"] = data_dir
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(alpaca_eval_docs(data_dir, alpaca_reference))})


def _switched(instruction: str) -> bool:
    """AlpacaEval randomises which output the judge sees first; we do it deterministically per instruction."""
    return hashlib.sha256(f"is_switched_outputs{instruction}".encode()).digest()[0] & 1 == 1


def process_results(doc: dict, results: list[str]) -> dict:
    output, reference = results[0], doc["reference"]
    if output.strip() == reference.strip():  # AlpacaEval: identical outputs are a tie, not judged
        return {"win": 0.5, "judge_unparseable": 0}
    switched = _switched(doc["instruction"])
    first, second = (output, reference) if switched else (reference, output)
    choice = parse_m_or_M(judges.session().ask(alpaca_eval_prompt(doc["instruction"], first, second)))
    if choice is None:
        return {"judge_unparseable": 1}
    model_won = (choice == 1) if switched else (choice == 2)
    return {"win": int(model_won), "judge_unparseable": 0}


def _import_alpaca_eval_glm():
    """The alpaca_eval library's GLM module. alpaca_eval 0.6 imports `pkg_resources` (for two version helpers
    we never call), which setuptools >= 81 no longer ships; a stand-in with the same two functions lets the
    library import unchanged."""
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            from importlib.metadata import version

            from packaging.version import parse

            shim = types.ModuleType("pkg_resources")
            shim.parse_version = parse
            shim.get_distribution = lambda name: types.SimpleNamespace(version=version(name))
            sys.modules["pkg_resources"] = shim
    from alpaca_eval.metrics import glm_winrate

    return glm_winrate


def length_controlled(samples: list[dict]) -> dict:
    """AlpacaEval 2.0's length-controlled win rate via `alpaca_eval.metrics.glm_winrate`, or why not."""
    try:
        glm = _import_alpaca_eval_glm()
    except ImportError as exc:
        return {"unavailable": f"alpaca_eval library not installed ({exc}); pip install 'qresafe-bench[alpaca-eval]'"}
    data_dir = _STATE.get("data_dir")
    try:
        location = resolve("alpaca_eval_df_gamed", data_dir)
    except DataSourceError:
        return {"unavailable": "alpaca_eval/df_gamed.csv (instruction difficulties the library's GLM needs) is not in "
                               "the data directory"}
    import pandas as pd

    rows = []
    for s in samples:
        if "win" not in s:
            continue
        doc = s["doc"]
        rows.append({"index": doc["index"], "instruction": doc["instruction"], "output_1": doc["reference"],
                     "output_2": s["filtered_resps"][0], "generator_1": "reference", "generator_2": "model",
                     "annotator": "qresafe-judge", "preference": 1.0 + s["win"]})  # 1 reference, 2 model, 1.5 tie
    if not rows:
        return {"unavailable": "no parsed judgments"}
    original = glm.hf_hub_download
    if not location.startswith("http"):
        glm.hf_hub_download = lambda *a, **k: location  # the library's one download, served from the data dir
    logging.getLogger().setLevel(logging.ERROR)
    try:
        out = glm.get_length_controlled_winrate(pd.DataFrame(rows), save_weights_dir=None,
                                                is_warn_extreme_changes=False)
    except Exception as exc:  # noqa: BLE001 - reported, never replaced by an approximation
        return {"unavailable": f"alpaca_eval GLM failed: {exc.__class__.__name__}: {str(exc)[:120]}"}
    finally:
        glm.hf_hub_download = original
    return {"value": out["length_controlled_winrate"] / 100, "standard_error": out["lc_standard_error"] / 100}


def summarise(samples: list[dict]) -> dict:
    wins = [s["win"] for s in samples if "win" in s]
    n = len(wins)
    # Ties (identical outputs) count half, as in AlpacaEval; the Wilson interval takes the fractional count.
    rate = wilson(sum(wins), n).as_dict() if n else {"value": float("nan"), "n": 0}
    metrics = {"win_rate": rate}
    lc = length_controlled(samples)
    if "value" in lc:
        se = lc["standard_error"]
        metrics["lc_win_rate"] = {"value": lc["value"], "n": n, "ci95_low": max(0.0, lc["value"] - 1.96 * se),
                                  "ci95_high": min(1.0, lc["value"] + 1.96 * se)}
    else:
        metrics["lc_win_rate"] = {"value": float("nan"), "n": n, "note": lc["unavailable"]}
    reference = samples[0]["doc"]["reference_generator"] if samples else None
    return {"metrics": metrics,
            "extra": {"judge_unparseable": sum(s.get("judge_unparseable", 0) for s in samples),
                      "reference": reference, "lc_win_rate_note": lc.get("unavailable"),
                      "licence": "AlpacaEval data: CC BY-NC 4.0"}}
