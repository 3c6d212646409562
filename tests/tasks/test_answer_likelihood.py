"""answer_likelihood, the judge-free utility task: its documents, its score, and its results in the store."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

from qresafe_bench.tasks import TASKS_DIR


def _utils():
    spec = importlib.util.spec_from_file_location("answer_likelihood_utils_t", TASKS_DIR / "answer_likelihood" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_documents_are_a_fixed_sample_of_clipped_reference_answers(data_dir: Path) -> None:
    utils = _utils()
    docs = utils.answer_docs(str(data_dir))
    assert len(docs) == 200 and docs == utils.answer_docs(str(data_dir))
    assert all(0 < len(d["reference"]) <= 200 and d["instruction"] for d in docs)
    assert len({d["index"] for d in docs}) == 200


def test_the_score_is_nll_per_byte_and_the_summary_a_mean_with_its_interval() -> None:
    utils = _utils()
    doc = {"reference": "héllo"}  # 6 bytes in UTF-8
    assert utils.process_results(doc, [(-3.0, False)]) == {"nll_per_byte": 0.5}
    summary = utils.summarise([{"nll_per_byte": v} for v in (0.4, 0.5, 0.6)])["metrics"]["nll_per_byte"]
    assert summary["n"] == 3 and math.isclose(summary["value"], 0.5) and summary["kind"] == "score"
    assert summary["ci95_low"] < 0.5 < summary["ci95_high"]


def test_eval_scores_it_and_a_rerun_computes_nothing(run_cli, tiny_random_dir, data_dir, home) -> None:
    args = ["eval", "--model", str(tiny_random_dir), "--tasks", "answer_likelihood", "--limit", "3",
            "--data-dir", str(data_dir), "--json"]
    code, out, err = run_cli(args)
    assert code == 0, err
    first = json.loads(out)
    metric = first["tasks"]["answer_likelihood"]["metrics"]["nll_per_byte"]
    assert metric["n"] == 3 and metric["value"] > 0 and first["generated"] == 3
    code, out, err = run_cli(args)
    assert code == 0 and json.loads(out) == first  # answered from the run store
    code, out, err = run_cli([*args[:-1], "--max-new-tokens", "4", "--json"])  # another run, the same requests
    rescored = json.loads(out)
    assert code == 0 and rescored["run_key"] != first["run_key"]
    assert rescored["generated"] == 0 and rescored["reused"] == 3  # every log-likelihood came from the store
    assert rescored["tasks"]["answer_likelihood"]["metrics"] == first["tasks"]["answer_likelihood"]["metrics"]
