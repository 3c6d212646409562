"""The Q-resafe bench: one run, every method on the same pairs, the tables and the wall-time ratio."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_patch.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_patch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bench


@pytest.mark.slow
def test_bench_prints_methods_taus_and_the_ratio(tiny_random_dir, home, data_dir, tmp_path, capsys) -> None:
    bench = _bench()

    out = tmp_path / "bench.md"
    bench(model=str(tiny_random_dir), quant="rtn", bits=2, calib=None, methods="qresafe,dpo-full", taus="0.2,0.6",
          steps=2, learning_rate=0.05, check_every=0, n_tier_prompts=4, n_harmful_prompts=4, limit=2,
          data_dir=str(data_dir), home=str(home), out=out)
    table = capsys.readouterr().out
    assert "| full precision |" in table and "| rtn w2 (unpatched) |" in table
    rows = [line for line in table.splitlines() if line.startswith("| qresafe") or line.startswith("| dpo-full")]
    method_tau = [(r.split(" | ")[0].removeprefix("| ").split("-")[0], r.split(" | ")[1]) for r in rows]
    assert method_tau == [("qresafe", "0.6"), ("dpo", "1"), ("qresafe", "0.2")]  # tau 0.6 is the qresafe row
    assert "Q-resafe / full-parameter DPO wall-time ratio:" in table and "(n=2)" in table
    assert out.read_text().startswith(table.strip().splitlines()[0])
