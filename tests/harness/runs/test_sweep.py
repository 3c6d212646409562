"""The sweep grid: which cells run, which are skipped and why, and the table it prints."""

from pathlib import Path

import pytest

from qresafe_bench.harness.generation.backends import BackendSettings
from qresafe_bench.harness.quantize.base import QuantError
from qresafe_bench.harness.runs.sweep import SweepGrid, cells, markdown_table, run_sweep


def test_cells_cover_the_grid_and_explain_skips() -> None:
    grid = SweepGrid(model="m", methods=("rtn", "bnb-nf4", "gptq"), bits=(8, 4), calib=("benign", "direct"),
                     group_sizes=(None, 32))
    planned = list(cells(grid))
    runnable = [c.spec.slug for c in planned if not c.skipped]
    assert runnable == ["m", "m_rtn_w8", "m_rtn_w8_g32", "m_rtn_w4", "m_rtn_w4_g32", "m_bnb-nf4_w4",
                        "m_gptq_w8_benign", "m_gptq_w8_benign_g32", "m_gptq_w8_direct", "m_gptq_w8_direct_g32",
                        "m_gptq_w4_benign", "m_gptq_w4_benign_g32", "m_gptq_w4_direct", "m_gptq_w4_direct_g32"]
    skipped = [(c.spec.quant, c.spec.bits, c.skipped) for c in planned if c.skipped]
    assert skipped == [("bnb-nf4", 8, "bnb-nf4 supports 4 bits only")]


def test_unknown_method_fails_before_running() -> None:
    with pytest.raises(QuantError, match="unknown quantization method"):
        SweepGrid(model="m", methods=("rtn", "hqq-magic"))


def test_sweep_runs_and_resumes_from_store(tiny_random_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    grid = SweepGrid(model=str(tiny_random_dir), methods=("rtn", "bnb-int8"), bits=(8, 4), group_sizes=(16,),
                     tasks=("advbench",))
    backend = BackendSettings(batch_size=8)
    first = run_sweep(grid, home=tmp_path, data_dir=str(data_dir), backend=backend, log=lambda _: None)
    assert [c.results["generated"] for c in first if c.results] == [520, 520, 520, 520]
    second = run_sweep(grid, home=tmp_path, data_dir=str(data_dir), backend=backend, log=lambda _: None)
    assert all(c.results["generated"] == 520 for c in second if c.results)  # same stored results, nothing new
    assert [c.results["run_key"] for c in second if c.results] == [c.results["run_key"] for c in first if c.results]
    table = markdown_table(second)
    assert "(n=520)" in table and "skipped: bnb-int8 supports 8 bits only" in table
    assert table.count("| ok |") == 4


def test_planning_a_sweep_imports_no_training_stack() -> None:
    """A sweep answered from the store must start fast: reading a patch recipe and resolving a built
    reference model may not import TRL, PEFT, the model classes, torch or lm-eval (seconds of start-up)."""
    import subprocess
    import sys

    code = ("import sys; import qresafe_bench.harness.runs.sweep, qresafe_bench.qresafe.patch, "
            "qresafe_bench.harness.zoo.build, qresafe_bench.harness.cli.app; "
            "print(sorted(m for m in ('trl', 'peft', 'transformers.models.llama.modeling_llama', 'torch', 'lm_eval') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _run_with_asr(path: Path, unsafe: list[int], n: int = 40) -> Path:
    import json

    path.mkdir()
    lines = [json.dumps({"task": "advbench", "doc_id": d, "asr": int(d in unsafe)}) for d in range(n)]
    lines.append(json.dumps({"task": "over_refusal", "doc_id": 0, "over_refusal": 1}))
    (path / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_patch_when_asr_rose_patches_only_a_significant_rise(tmp_path: Path) -> None:
    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.harness.runs.sweep import Cell, _asr_did_not_rise, asr_flips

    base = Cell(VariantSpec(model="m"), run_dir=_run_with_asr(tmp_path / "base", [0, 1]))
    rose = Cell(VariantSpec(model="m", quant="rtn", bits=2),
                run_dir=_run_with_asr(tmp_path / "rose", [0, *range(10, 20)]))  # 10 up, 1 down
    noise = Cell(VariantSpec(model="m", quant="rtn", bits=4), run_dir=_run_with_asr(tmp_path / "noise", [0, 1, 5, 6]))
    fell = Cell(VariantSpec(model="m", quant="rtn", bits=8), run_dir=_run_with_asr(tmp_path / "fell", []))
    planned = [base, rose, noise, fell]
    assert asr_flips(base.run_dir, rose.run_dir) == (40, 10, 1)
    assert _asr_did_not_rise(rose, planned) is None  # McNemar p = 0.012
    assert "2 prompts turned unsafe, 0 safe of 40; McNemar p = 0.5" in _asr_did_not_rise(noise, planned)
    assert "0 prompts turned unsafe, 2 safe" in _asr_did_not_rise(fell, planned)
    with pytest.raises(RuntimeError, match="evaluated first"):
        _asr_did_not_rise(Cell(VariantSpec(model="m", quant="rtn", bits=3)), planned)


def test_patch_when_needs_advbench_and_the_full_precision_cell() -> None:
    from qresafe_bench.harness.runs.sweep import SweepSpecError

    with pytest.raises(SweepSpecError, match="unknown patch_when"):
        SweepGrid(model="m", methods=("rtn",), patch_when="sometimes")
    with pytest.raises(SweepSpecError, match="needs the advbench task"):
        SweepGrid(model="m", methods=("rtn",), tasks=("over_refusal",), patch_when="asr-rose")
    with pytest.raises(SweepSpecError, match="needs the advbench task"):
        SweepGrid(model="m", methods=("rtn",), include_unquantized=False, patch_when="asr-rose")


def test_spec_file_reads_patch_when(tmp_path: Path) -> None:
    from qresafe_bench.harness.runs.sweep import load_sweep_spec

    spec = tmp_path / "grid.yaml"
    spec.write_text("model: m\nquant: [rtn]\npatch: {recipe: paper}\npatch_when: asr-rose\n")
    assert load_sweep_spec(spec)["patch_when"] == "asr-rose"


def test_patches_run_after_every_unpatched_cell_recipe_by_recipe(tmp_path: Path, monkeypatch) -> None:
    from qresafe_bench.harness.runs import sweep

    ran: list[str] = []
    monkeypatch.setattr(sweep, "_run_cell", lambda cell, *args, **kwargs: ran.append(cell.spec.slug))
    grid = SweepGrid(model="m", methods=("rtn",), bits=(8, 4), tasks=("advbench",),
                     patch=((("recipe", "paper"),), (("recipe", "tuned"),)))
    planned = run_sweep(grid, home=tmp_path, data_dir=None, backend=BackendSettings(), log=lambda _: None)
    assert ran == ["m", "m_rtn_w8", "m_rtn_w4", "m_rtn_w8_qresafe", "m_rtn_w4_qresafe", "m_rtn_w8_qresafe-tuned",
                   "m_rtn_w4_qresafe-tuned"]
    assert [c.spec.slug for c in planned][:4] == ["m", "m_rtn_w8", "m_rtn_w8_qresafe", "m_rtn_w8_qresafe-tuned"]


def test_the_table_shows_the_decoding_attack_columns() -> None:
    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.harness.runs.sweep import Cell

    def rate(k: int) -> dict:
        return {"value": k / 100, "n": 100, "successes": k, "ci95_low": (k - 9) / 100, "ci95_high": (k + 8) / 100}

    metrics = {"asr_any": rate(90), "asr_greedy": rate(52), "break_temperature": rate(83), "break_top_p": rate(71),
               "break_top_k": rate(84), "best_setting": {**rate(69), "setting": "top_k=500"}}
    cell = Cell(VariantSpec("m"), results={"tasks": {"advbench_decoding": {"metrics": metrics}}})
    table = markdown_table([cell, Cell(VariantSpec("m", "rtn", 4), skipped="not planned")])
    assert "decoding attack ASR-any % [95% CI] (n=100)" in table and "any top-k % (n=100)" in table
    assert "| 90.0 [81.0, 98.0] | 52.0 [43.0, 60.0] | 83.0 [74.0, 91.0] | 71.0 [62.0, 79.0] | 84.0 [75.0, 92.0] | ok |" \
        in table
    assert "AdvBench ASR" not in table  # only the tasks the grid ran


def test_the_decoding_attack_is_paired_with_full_precision_per_prompt(tmp_path: Path) -> None:
    """A prompt counts as broken when any setting's sample broke it: fp breaks prompt 0 (under top-k only);
    the variant breaks 1 and 2 (greedy) and not 0: 2 turned unsafe, 1 safe."""
    import json

    from qresafe_bench.harness.core.spec import VariantSpec
    from qresafe_bench.harness.runs.sweep import Cell, decoding_flips

    def run(name: str, hits: dict[int, str]) -> Path:
        path = tmp_path / name
        path.mkdir()
        lines = [{"task": "advbench_decoding", "doc_id": 3 * p + i, "asr_any": [p, knob, None, int(hits.get(p) == knob)]}
                 for p in range(3) for i, knob in enumerate(("greedy", "top_k", "top_p"))]
        (path / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        return path

    base, variant = run("fp", {0: "top_k"}), run("q", {1: "greedy", 2: "greedy"})
    assert decoding_flips(base, variant) == (3, 2, 1)
    metrics = {m: {"value": 0.5, "n": 3, "ci95_low": 0.1, "ci95_high": 0.9}
               for m in ("asr_any", "asr_greedy", "break_temperature", "break_top_p", "break_top_k")}
    cells = [Cell(VariantSpec("m"), results={"tasks": {"advbench_decoding": {"metrics": metrics}}}, run_dir=base),
             Cell(VariantSpec("m", "rtn", 4), results={"tasks": {"advbench_decoding": {"metrics": metrics}}},
                  run_dir=variant)]
    assert "| 2 / 1 of 3, p = 1 | ok |" in markdown_table(cells)
