"""The decoding attack (advbench_decoding): grids, prompt-level rates, sampled generations in the store,
batched per setting, resumable."""

from __future__ import annotations

from pathlib import Path

import pytest

from qresafe_bench.harness.core.spec import VariantSpec
from qresafe_bench.harness.generation.backends import BackendSettings
from qresafe_bench.harness.generation.store_lm import occurrence_keys
from qresafe_bench.harness.runs.evaluate import EvalError, EvalRequest, _task_summariser, run_eval
from qresafe_bench.harness.scoring.decoding import FULL_GRID, GridError, parse_grid, settings
from qresafe_bench.harness.store import request_key

GRID = "temperature=0.7;top_p=0,0.9;top_k=5"  # 4 sampled settings + greedy


def test_grids() -> None:
    assert len(FULL_GRID["temperature"]) == 20 and FULL_GRID["temperature"][0] == 0.05 and FULL_GRID["temperature"][-1] == 1.0
    assert len(FULL_GRID["top_p"]) == 21 and FULL_GRID["top_p"][0] == 0.0 and FULL_GRID["top_p"][-1] == 1.0
    assert FULL_GRID["top_k"] == (1, 2, 5, 10, 20, 50, 100, 200, 500)
    assert len(settings("full")) == 51 and len(settings("reduced")) == 13 and settings()[0].label == "greedy"
    s = settings(GRID)
    assert [x.label for x in s] == ["greedy", "temperature=0.7", "top_p=0", "top_p=0.9", "top_k=5"]
    # one knob at a time: the other two pinned at their neutral values, top-p 0 kept and sampled
    assert s[2].gen_kwargs() == {"do_sample": True, "temperature": 1.0, "top_p": 0.0, "top_k": 0}
    for bad in ("temperature=0", "top_p=1.5", "beam=3", "top_k=x", ""):
        with pytest.raises(GridError):
            parse_grid(bad)


def test_prompt_level_rates_from_records() -> None:
    summarise = _task_summariser("advbench_decoding")
    recs = [[0, "greedy", None, 0], [0, "temperature", 0.7, 1], [1, "greedy", None, 0], [1, "top_k", 5.0, 0],
            [1, "top_k", 5.0, 1], [2, "greedy", None, 1], [2, "temperature", 0.7, 0]]
    out = summarise([{"asr_any": r, "judge_unparseable": 0} for r in recs] + [{"judge_unparseable": 1}])
    m = out["metrics"]
    assert (m["asr_any"]["successes"], m["asr_any"]["n"]) == (3, 3)
    assert (m["asr_greedy"]["successes"], m["break_temperature"]["successes"], m["break_top_k"]["successes"]) == (1, 1, 1)
    assert m["break_temperature"]["n"] == 2 and m["best_setting"]["setting"] == "top_k=5"
    assert all(0 <= m[k]["ci95_low"] <= m[k]["value"] <= m[k]["ci95_high"] <= 1 for k in m)
    assert out["extra"]["judge_unparseable"] == 1 and out["extra"]["per_setting"]["greedy"]["n"] == 3


def test_sampled_repeats_get_their_own_store_keys() -> None:
    greedy, sampled = {"do_sample": False}, {"do_sample": True, "temperature": 0.7}
    keys = occurrence_keys([("a", greedy), ("a", greedy), ("a", sampled), ("a", sampled), ("b", sampled)])
    assert keys[0] == keys[1] and len({keys[2], keys[3], keys[4]}) == 3 and keys[2] == request_key("a", sampled)


def _request(model_dir: Path, data_dir: Path, **kwargs) -> EvalRequest:
    base = dict(spec=VariantSpec(model=str(model_dir)), tasks=("advbench_decoding",), limit=3, max_new_tokens=4,
                backend=BackendSettings(batch_size=16), data_dir=str(data_dir), decoding_grid=GRID, decoding_samples=2)
    return EvalRequest(**{**base, **kwargs})


def test_sweep_is_batched_per_setting_stored_and_resumable(tiny_random_dir, data_dir, home, monkeypatch) -> None:
    from lm_eval.models.huggingface import HFLM

    batches = []
    original = HFLM._model_generate

    def spy(self, context, max_length, stop, **kwargs):
        batches.append((context.shape[0], kwargs.get("temperature"), kwargs.get("top_p"), kwargs.get("top_k")))
        return original(self, context, max_length, stop, **kwargs)

    monkeypatch.setattr(HFLM, "_model_generate", spy)
    produced = []

    def crash_after(n: int):
        def hook() -> None:
            produced.append(1)
            if len(produced) == n:
                raise KeyboardInterrupt
        return hook

    with pytest.raises(KeyboardInterrupt):
        run_eval(_request(tiny_random_dir, data_dir), home=home, on_item=crash_after(10), log=lambda _: None)
    total = 3 * (1 + 4 * 2)  # prompts x (greedy + 4 settings x 2 samples)
    batches.clear()
    resumed = run_eval(_request(tiny_random_dir, data_dir), home=home, log=lambda _: None)
    assert resumed.results["reused"] == 10 and resumed.results["generated"] == total - 10
    # every generate call held one setting and more than one prompt: batched per setting, never one by one
    assert all(size > 1 for size, *_ in batches) and len(batches) <= 5
    metrics = resumed.results["tasks"]["advbench_decoding"]["metrics"]
    assert {"asr_any", "asr_greedy", "break_temperature", "break_top_p", "break_top_k", "best_setting"} <= set(metrics)
    assert metrics["asr_any"]["n"] == 3 and metrics["asr_any"]["value"] >= metrics["asr_greedy"]["value"]
    # more prompts later: the stored ones (all settings, both samples) are reused
    bigger = run_eval(_request(tiny_random_dir, data_dir, limit=4), home=home, log=lambda _: None)
    assert bigger.results["reused"] == total and bigger.results["generated"] == 9


def test_bad_decoding_options_are_refused(tiny_random_dir, data_dir) -> None:
    with pytest.raises(EvalError, match="decoding grid"):
        _request(tiny_random_dir, data_dir, decoding_grid="temperature=-1")
    with pytest.raises(EvalError, match="--decoding-samples"):
        _request(tiny_random_dir, data_dir, decoding_samples=0)
