"""MT-bench and AlpacaEval end to end with a judge server on loopback; JBB and HarmBench; refusals and
one-line errors that lose nothing already generated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from judge_server import JudgeServer

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.runs.evaluate import EvalError, EvalRequest
from qresafe_bench.tasks import TASKS_DIR


def _one_error_line(err: str) -> bool:
    """One `error:` line, the last thing printed (in-process runs also show library progress bars)."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    return len(errors) == 1 and err.rstrip().endswith(errors[0])


def _utils(task: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{task}_utils_t", TASKS_DIR / task / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval_args(model: Path, data_dir: Path, url: str, *extra: str) -> list[str]:
    return ["eval", "--model", str(model), "--tasks", "mt_bench,alpaca_eval", "--limit", "3", "--max-new-tokens", "6",
            "--batch-size", "8", "--data-dir", str(data_dir), "--judge", f"openai:{url}", "--json", *extra]


def test_mt_bench_and_alpaca_eval_end_to_end_and_rerun_costs_no_judge_calls(
        run_cli, tiny_random_dir, data_dir, home, monkeypatch, capsys) -> None:
    with JudgeServer() as server:
        code, out, err = run_cli(_eval_args(tiny_random_dir, data_dir, server.url))
        assert code == 0, err
        results = json.loads(out)
        mt, ae = results["tasks"]["mt_bench"], results["tasks"]["alpaca_eval"]
        assert mt["metrics"]["score"]["value"] == 7.0 and mt["metrics"]["score"]["n"] == 6  # 3 questions x 2 turns
        assert mt["metrics"]["score_turn1"]["n"] == 3 and mt["metrics"]["score_turn2"]["n"] == 3
        assert "score_writing" in mt["metrics"] and mt["judge_unparseable"] == 0
        assert ae["metrics"]["win_rate"]["n"] == 3 and "lc_win_rate" in ae["metrics"] and ae["reference"]
        assert "via openai:" in mt["scorer"] and results["judge"]["calls"] == 9 == len(server.calls)
        # per-question judgments in the store, and turn 2 saw the model's own turn-1 answer
        (run_dir,) = [d for d in (home / "runs").iterdir() if d.is_dir()]
        samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
        mt_samples = [s for s in samples if s["task"] == "mt_bench"]
        turn1 = {s["question_id"]: s["output"] for s in mt_samples if s["turn"] == 1}
        for s in (s for s in mt_samples if s["turn"] == 2):
            assert turn1[s["question_id"]] in s["context"] and "score" in s
        judgments = list((home / "judgments").glob("*.jsonl"))
        assert len(judgments) == 1 and len(judgments[0].read_text().splitlines()) == 9
        # rerun: nothing generated, no judge call
        code, out2, _ = run_cli(_eval_args(tiny_random_dir, data_dir, server.url))
        assert code == 0 and len(server.calls) == 9 and json.loads(out2)["run_key"] == results["run_key"]
        # even with the finished run deleted, judgments come from the judge cache (and outputs from the store)
        shutil.rmtree(home / "runs")
        code, out3, _ = run_cli(_eval_args(tiny_random_dir, data_dir, server.url))
        again = json.loads(out3)
        assert code == 0 and len(server.calls) == 9 and again["judge"]["cached"] == 9 and again["generated"] == 0
        assert json.dumps(again["tasks"], sort_keys=True) == json.dumps(results["tasks"], sort_keys=True)  # NaN-safe


def test_judged_tasks_are_refused_without_a_judge(run_cli, tiny_random_dir, data_dir, home, monkeypatch, capsys) -> None:
    monkeypatch.delenv("QRESAFE_JUDGE", raising=False)
    with pytest.raises(EvalError, match="need.*a judge.*--judge openai:"):
        EvalRequest(spec=VariantSpec(model=str(tiny_random_dir)), tasks=("mt_bench",))
    code, out, err = run_cli(["eval", "--model", str(tiny_random_dir), "--tasks", "alpaca_eval", "--data-dir",
                              str(data_dir)])
    assert code == 1 and out == "" and _one_error_line(err) and "--judge" in err
    assert not (home / "generations").exists()


@pytest.mark.parametrize("mode,message", [("unreachable", "unreachable"), ("malformed", "malformed judge reply")])
def test_bad_judge_fails_in_one_line_and_keeps_generations(run_cli, mode, message, tiny_random_dir, data_dir, home,
                                                           monkeypatch, capsys) -> None:
    with JudgeServer(mode="malformed") as server:
        url = server.url
        if mode == "unreachable":
            server.__exit__()
        args = ["eval", "--model", str(tiny_random_dir), "--tasks", "alpaca_eval", "--limit", "2", "--max-new-tokens",
                "4", "--data-dir", str(data_dir), "--judge", f"openai:{url}", "--judge-model", "m"]
        code, _, err = run_cli(args)
        if mode == "unreachable":
            server._httpd = type("Closed", (), {"shutdown": lambda self: None, "server_close": lambda self: None})()
    assert code == 1 and _one_error_line(err) and message in err
    stored = list((home / "generations").rglob("*.jsonl"))
    assert stored and len(stored[0].read_text().splitlines()) == 2  # the generations survive the judge failure


def test_unknown_judge_template_and_missing_data_fail_in_one_line(run_cli, tiny_random_dir, data_dir, tmp_path, home,
                                                                  monkeypatch, capsys) -> None:
    code, _, err = run_cli(["eval", "--model", str(tiny_random_dir), "--tasks", "jbb", "--judge-template", "vibes",
                            "--judge", "openai:http://127.0.0.1:9/v1", "--data-dir", str(data_dir)])
    assert code == 1 and _one_error_line(err) and "unknown judge template 'vibes'" in err
    (tmp_path / "mt_bench").mkdir()
    code, _, err = run_cli(["eval", "--model", str(tiny_random_dir), "--tasks", "mt_bench", "--judge",
                            "openai:http://127.0.0.1:9/v1", "--data-dir", str(tmp_path)])
    assert code == 1 and _one_error_line(err) and "mt_bench_questions" in err and "not found" in err


def test_safety_sets_and_judge_template_on_jbb(run_cli, tiny_random_dir, data_dir, home, monkeypatch, capsys) -> None:
    docs = _utils("jbb").jbb_docs(str(data_dir))
    assert len(docs) == 200 and [d["kind"] for d in docs[:4]] == ["harmful", "benign", "harmful", "benign"]
    assert docs[0]["behavior"] == docs[1]["behavior"]
    assert len(_utils("harmbench").harmbench_standard(str(data_dir))) == 159
    assert len(_utils("harmbench").harmbench_standard(str(data_dir), "val")) == 41
    with JudgeServer() as server:
        code, out, err = run_cli(["eval", "--model", str(tiny_random_dir), "--tasks", "jbb,harmbench", "--limit", "4",
                                  "--max-new-tokens", "4", "--data-dir", str(data_dir), "--judge", f"openai:{server.url}",
                                  "--judge-template", "jbb", "--json"])
        assert code == 0, err
        results = json.loads(out)["tasks"]
        assert results["jbb"]["metrics"]["asr"] == {**results["jbb"]["metrics"]["asr"], "value": 1.0, "n": 2}
        assert results["jbb"]["metrics"]["over_refusal"]["n"] == 2 and results["harmbench"]["metrics"]["asr"]["n"] == 4
        assert results["jbb"]["scorer"].startswith("judge jbb via openai:") and len(server.calls) == 6


def test_alpaca_eval_docs_and_length_controlled_win_rate(data_dir, tmp_path) -> None:
    utils = _utils("alpaca_eval")
    docs = utils.alpaca_eval_docs(str(data_dir))
    assert len(docs) == 805 and docs[0]["reference_generator"] == "gpt4_1106_preview"
    assert utils.alpaca_eval_docs(str(data_dir), "text_davinci_003")[0]["reference_generator"] == "text_davinci_003"
    utils.load_dataset(str(data_dir))
    samples = [{"doc": d, "filtered_resps": ["x" * (10 + i % 50)], "win": i % 3 == 0} for i, d in enumerate(docs)]
    out = utils.summarise(samples)
    assert out["metrics"]["win_rate"]["n"] == 805 and "df_gamed.csv" in out["extra"]["lc_win_rate_note"]
    pytest.importorskip("alpaca_eval")
    # With the library's instruction-difficulty file in the data dir, the LC win rate comes from its GLM.
    import random

    local = tmp_path / "data"
    shutil.copytree(data_dir / "alpaca_eval", local / "alpaca_eval")
    rnd = random.Random(0)
    rows = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for model in ("gamed_short", "gamed_long"):
        for i in range(805):
            rows.append(f"{model},{i},{rnd.random():.3f},{rnd.uniform(-2, 2):.3f},{(i % 7) / 3:.3f},False")
    (local / "alpaca_eval" / "df_gamed.csv").write_text("\n".join(rows) + "\n")
    utils.load_dataset(str(local))
    lc = utils.summarise(samples)["metrics"]["lc_win_rate"]
    assert 0.0 <= lc["value"] <= 1.0 and lc["ci95_low"] <= lc["value"] <= lc["ci95_high"]
