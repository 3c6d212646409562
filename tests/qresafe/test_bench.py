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
    assert "answer NLL/byte [95% CI]" in table and "ref utility" not in table  # a model that is not ref-tiny
    assert out.read_text().startswith(table.strip().splitlines()[0])


def test_named_recipes_need_select_lr_and_known_names(home, data_dir) -> None:
    with pytest.raises(SystemExit, match="add --select-lr"):
        _bench()(with_recipes="paper,tuned")
    with pytest.raises(SystemExit, match="unknown --recipe 'nope'"):  # refused before any pair is generated
        _bench()(select_lr=True, with_recipes="paper,nope", home=str(home), data_dir=str(data_dir))
    assert not home.exists() or not any(home.iterdir())


def _script():
    spec = importlib.util.spec_from_file_location("bench_patch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(harmful: float, benign: float, utility: float):
    from qresafe_bench.qresafe.dev_check import CheckResult

    return CheckResult(step=0, harmful_refusal=harmful, benign_refusal=benign, utility=utility)


UNPATCHED = (0.10, 0.10, 0.50)  # harmful refused, benign refused, utility
FULL_PRECISION = (0.90, 0.20, 0.60)  # benign cap: max(0.10, 0.20) + 0.05; utility floor: 0.50 - 0.05


def _choose(points: dict[float, tuple[float, float, float]]):
    script = _script()
    return script.choose_learning_rate({lr: _check(*p) for lr, p in points.items()}, _check(*UNPATCHED),
                                       _check(*FULL_PRECISION), 0.05)


def test_rule_takes_the_most_harmful_refusal_within_the_guard() -> None:
    chosen = _choose({1e-5: (0.30, 0.10, 0.50),   # within
                      1e-4: (0.80, 0.26, 0.55),   # benign refusal over the cap: out
                      1e-3: (0.60, 0.10, 0.44),   # utility under the floor: out
                      1e-2: (0.50, 0.25, 0.45)})  # exactly on both edges: within
    assert chosen.learning_rate == 1e-2
    assert chosen.within_guard == {1e-5: True, 1e-4: False, 1e-3: False, 1e-2: True}
    assert chosen.reason == "the highest harmful refusal within the guard"


def test_rule_takes_the_smaller_lr_on_a_tie() -> None:
    chosen = _choose({5e-4: (0.40, 0.10, 0.50), 5e-5: (0.40, 0.12, 0.52), 5e-6: (0.20, 0.10, 0.50)})
    assert chosen.learning_rate == 5e-5


def test_rule_takes_the_smallest_lr_when_none_is_within_the_guard() -> None:
    chosen = _choose({5e-4: (0.90, 0.60, 0.50), 5e-5: (0.70, 0.10, 0.30)})
    assert chosen.learning_rate == 5e-5 and not any(chosen.within_guard.values())
    assert chosen.reason.startswith("none within the guard")


def test_baselines_file_fixes_grids_and_rule(tmp_path) -> None:
    script = _script()
    plan = script.load_baselines(script.default_baselines_file())
    assert plan.recipe == "paper" and set(plan.grids) == {"qresafe", "lora-dpo", "sft", "dpo-full"}
    assert plan.grids["qresafe"] == plan.grids["lora-dpo"] == plan.grids["sft"] == (5e-6, 5e-5, 5e-4)
    assert plan.grids["dpo-full"] == (1e-6, 5e-6, 5e-5)
    assert "smaller learning rate" in plan.rule and "AdvBench" not in plan.rule
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: {recipe: paper}\ngrids: {qresafe: [5e-6]}\nrule: r\n")  # YAML reads 5e-6 as text
    with pytest.raises(SystemExit, match="qresafe grid must be a non-empty list"):
        script.load_baselines(bad)


@pytest.mark.slow
def test_select_lr_chooses_by_the_rule(tiny_random_dir, home, data_dir, tmp_path, capsys) -> None:
    import re

    script = _script()
    grids = tmp_path / "baselines.yaml"
    grids.write_text("budget: {recipe: paper}\ngrids:\n  qresafe: [1.0e-3, 5.0e-2]\n  dpo-full: [1.0e-4, 1.0e-2]\n"
                     "rule: the rule of qresafe/baselines.yaml\n")
    script.bench(model=str(tiny_random_dir), quant="rtn", bits=2, calib=None, methods="qresafe,dpo-full", taus="",
                 steps=2, learning_rate=None, check_every=0, n_tier_prompts=4, n_harmful_prompts=4, limit=2,
                 data_dir=str(data_dir), home=str(home), out=None, select_lr=True, baselines=grids,
                 with_recipes="paper")
    table = capsys.readouterr().out
    main, _, every = table.partition("Every grid point")

    def counts(row: str) -> tuple[float, float, float]:
        rates = [int(k) / int(n) for k, n in re.findall(r"\((\d+)/(\d+)\)", row)]
        nll = re.findall(r"NLL/byte (\d+\.\d+)", row)  # not the reference model: utility is minus the NLL
        assert len(rates) == 2 and len(nll) == 1, row
        return rates[0], rates[1], -float(nll[0])

    rows = {r.split(" | ")[0].removeprefix("| "): r for r in main.splitlines() if r.startswith("| ")}
    unpatched, full_precision = _check(*counts(rows["rtn w2 (unpatched)"])), _check(*counts(rows["full precision"]))
    for method, lrs in (("qresafe", (1e-3, 5e-2)), ("dpo-full", (1e-4, 1e-2))):
        points = {float(r.split(" | ")[1]): _check(*counts(r)) for r in every.splitlines()
                  if r.startswith(f"| {method} | ")}
        assert sorted(points) == list(lrs)
        expected = script.choose_learning_rate(points, unpatched, full_precision, 0.05)
        assert float(rows[method].split(" | ")[1]) == expected.learning_rate
        assert "(n=2)" in rows[method]
    paper = rows["qresafe, `paper` recipe"]  # the patch as the boards make it, beside the baselines
    assert paper.split(" | ")[1] == "5e-06" and "(n=2)" in paper
    assert counts(paper)  # its own held-out checks
    assert "Q-resafe / full-parameter DPO at their chosen learning rates, wall time:" in table
    assert "peak memory (cpu_peak_rss):" in table
