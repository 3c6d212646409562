"""Sweeps through the store: a finished sweep reruns from it without generating, a sweep killed with
SIGKILL mid-cell and restarted ends with the same results as an uninterrupted one, two sweeps on one
store at once leave it whole; the grid as a YAML file; patched cells in the plan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qresafe_bench.harness.generation.backends import BackendSettings
from qresafe_bench.harness.runs.sweep import SweepGrid, SweepSpecError, cells, load_sweep_spec, run_sweep

LIMIT = 6


def _grid(model: Path, **extra) -> SweepGrid:
    return SweepGrid(model=str(model), methods=("rtn",), bits=(8, 4), group_sizes=(16,), tasks=("advbench",),
                     limit=LIMIT, **extra)


def _sweep_cmd(model: Path, home: Path, batch_size: int) -> list[str]:
    return [sys.executable, "-m", "qresafe_bench.harness.cli.app", "sweep", "--model", str(model), "--quant", "rtn",
            "--bits", "8,4", "--group-size", "16", "--tasks", "advbench", "--limit", str(LIMIT),
            "--batch-size", str(batch_size), "--home", str(home)]


def _env(data_dir: Path) -> dict:
    return {**os.environ, "QRESAFE_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _outcome(home: Path) -> dict:
    """Per variant: its results' rates and every stored (prompt, output, score)."""
    out = {}
    for results_path in (home / "runs").glob("*/results.json"):
        results = json.loads(results_path.read_text())
        samples = [json.loads(line) for line in (results_path.parent / "samples.jsonl").read_text().splitlines()]
        out[results["variant_id"]] = {
            "metrics": results["tasks"]["advbench"]["metrics"],
            "samples": sorted((s["doc_id"], s["context"], s["output"], s["asr"]) for s in samples)}
    return out


def _log_lines(home: Path) -> dict[str, list[str]]:
    return {str(p.relative_to(home)): p.read_text().splitlines() for p in (home / "generations").rglob("*.jsonl")}


def test_finished_sweep_reruns_from_store_without_generating(tiny_random_dir: Path, data_dir: Path,
                                                             tmp_path: Path) -> None:
    """The rerun runs in a fresh process, as a user's would, so start-up counts: it must not even import
    lm-eval or torch (nothing to generate, nothing to load), and it is timed from the first import."""
    grid, backend = _grid(tiny_random_dir), BackendSettings(batch_size=8)
    first = run_sweep(grid, home=tmp_path, data_dir=str(data_dir), backend=backend, log=lambda _: None)
    assert [c.from_store for c in first if c.results] == [False, False, False]

    rerun = f"""
import json, sys, time
started = time.perf_counter()
from qresafe_bench.harness.generation.backends import BackendSettings
from qresafe_bench.harness.runs.sweep import SweepGrid, run_sweep
grid = SweepGrid(model={str(tiny_random_dir)!r}, methods=("rtn",), bits=(8, 4), group_sizes=(16,),
                 tasks=("advbench",), limit={LIMIT})
from pathlib import Path
cells = run_sweep(grid, home=Path({str(tmp_path)!r}), data_dir={str(data_dir)!r}, backend=BackendSettings(batch_size=8),
                  log=lambda _: None)
print(json.dumps({{"from_store": [c.from_store for c in cells if c.results], "results": [c.results for c in cells],
                  "seconds": time.perf_counter() - started,
                  "imported": [m for m in ("lm_eval", "torch", "transformers") if m in sys.modules]}}))
"""
    done = subprocess.run([sys.executable, "-c", rerun], capture_output=True, text=True, env=_env(data_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    second = json.loads(done.stdout.strip().splitlines()[-1])
    assert second["from_store"] == [True, True, True]
    assert second["results"] == json.loads(json.dumps([c.results for c in first]))
    assert second["imported"] == [], f"a rerun from the store imported {second['imported']}"
    assert second["seconds"] <= 5.0, f"rerun from the store took {second['seconds']:.1f} s"


def test_sigkill_mid_cell_then_rerun_matches_uninterrupted(tiny_random_dir: Path, data_dir: Path,
                                                           tmp_path: Path) -> None:
    # batch size 1: each prompt is generated (and stored) on its own, so the outputs cannot depend on which
    # prompts happened to share a padded batch before and after the kill.
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_sweep_cmd(tiny_random_dir, killed, 1), env=_env(data_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        # kill once the second cell (rtn w8) has stored some, not all, of its generations
        while time.time() < deadline:
            logs = _log_lines(killed) if (killed / "generations").exists() else {}
            partial = [lines for lines in logs.values() if 0 < len(lines) < LIMIT]
            if len(logs) >= 2 and partial:
                break
            if proc.poll() is not None:
                pytest.fail("the sweep finished before it could be killed mid-cell")
            time.sleep(0.02)
        else:
            pytest.fail("no cell started generating in time")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    finished_before = len(list((killed / "runs").glob("*/results.json")))
    assert finished_before < 3  # killed mid-sweep: not every cell had its results
    stored_before = _log_lines(killed)

    rerun = subprocess.run(_sweep_cmd(tiny_random_dir, killed, 1), env=_env(data_dir), capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _log_lines(killed)
    for name, lines in stored_before.items():  # nothing written before the kill was lost or rewritten
        complete = [line for line in lines if line.endswith("}")]
        assert after[name][: len(complete)] == complete
    assert all(len(lines) == LIMIT for lines in after.values())  # nothing generated twice

    uninterrupted = subprocess.run(_sweep_cmd(tiny_random_dir, clean, 1), env=_env(data_dir), capture_output=True,
                                   text=True, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert _outcome(killed) == _outcome(clean)
    assert len(_outcome(clean)) == 3
    assert rerun.stdout == uninterrupted.stdout  # the same table


def test_two_concurrent_sweeps_share_one_store(tiny_random_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "shared"
    procs = [subprocess.Popen(_sweep_cmd(tiny_random_dir, home, 2), env=_env(data_dir), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    for proc, (_stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
    assert outputs[0][0] == outputs[1][0]  # both print the same table
    assert sum("another sweep is on it" in stderr for _, stderr in outputs) >= 1  # they did meet at a lock
    logs = _log_lines(home)
    assert len(logs) == 3
    for name, lines in logs.items():
        records = [json.loads(line) for line in lines]  # every line whole
        keys = [r["key"] for r in records]
        assert len(keys) == len(set(keys)) == LIMIT, name  # each prompt generated once, by one of the two
    assert len(list((home / "runs").glob("*/results.json"))) == 3
    assert not list((home / "variants").glob(".*tmp*"))  # no half-built variant left behind


def test_sweep_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("model: ref-tiny\nquant: [rtn, gptq]\nbits: 4,2\ncalib: [direct]\ngroup_size: [default, -1]\n"
                    "tasks: advbench\nlimit: 10\npatch: {method: qresafe, steps: 5}\n")
    fields = load_sweep_spec(path)
    assert fields.pop("batch_size") == 64
    grid = SweepGrid(**fields)
    assert grid.methods == ("rtn", "gptq") and grid.bits == (4, 2) and grid.group_sizes == (None, -1)
    assert grid.limit == 10 and grid.patch_recipe().label == "qresafe-steps5"
    path.write_text("model: ref-tiny\nquant: rtn\nbitz: 4\n")
    with pytest.raises(SweepSpecError, match="bitz"):
        load_sweep_spec(path)


def test_patched_cells_follow_their_quantized_cell() -> None:
    grid = SweepGrid(model="m", methods=("rtn", "bnb-nf4"), bits=(4,), patch=(("method", "dpo-full"),))
    plan = [(c.spec.slug, c.kind, c.skipped) for c in cells(grid)]
    assert plan[:3] == [("m", "base", None), ("m_rtn_w4", "quantized", None),
                        ("m_rtn_w4_dpo-full", "patched", None)]
    assert plan[3][:2] == ("m_bnb-nf4_w4", "quantized")
    assert plan[4][0] == "m_bnb-nf4_w4_dpo-full" and "integer-grid" in plan[4][2]  # refused, with the reason


def test_a_refused_patch_is_a_skipped_cell_not_retried(tiny_random_dir: Path, data_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty patch set follows from stored generations alone: the sweep lists the cell as skipped, with
    the reason, and a rerun answers it from the store instead of calling it a failure to retry."""
    from qresafe_bench.qresafe import patch

    monkeypatch.setattr(patch, "generate_responses", lambda model, spec, prompts, **_: ["same"] * len(prompts))
    grid = SweepGrid(model=str(tiny_random_dir), methods=("rtn",), bits=(8,), group_sizes=(16,),
                     tasks=("advbench",), limit=2,
                     patch=(("method", "qresafe"), ("n_tier_prompts", 4), ("n_harmful_prompts", 4)))
    first = run_sweep(grid, home=tmp_path, data_dir=str(data_dir), backend=BackendSettings(batch_size=8),
                      log=lambda _: None)
    patched = [c for c in first if c.parent is not None]
    assert len(patched) == 1 and patched[0].error is None
    assert patched[0].skipped.startswith("patch refused: the patch set is empty")

    def no_generation(*args, **kwargs):
        raise AssertionError("a stored refusal generated again")

    monkeypatch.setattr(patch, "generate_responses", no_generation)
    second = run_sweep(grid, home=tmp_path, data_dir=str(data_dir), backend=BackendSettings(batch_size=8),
                       log=lambda _: None)
    assert [c.skipped for c in second] == [c.skipped for c in first]
    assert not any(c.error for c in second)


SEVERAL = "[{recipe: paper}, {recipe: tuned}, {method: sft, recipe: tuned}]"


def test_a_spec_with_several_recipes_plans_one_patched_cell_per_recipe(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"model: m\nquant: [rtn, bnb-nf4]\nbits: 4\ntasks: advbench\npatch: {SEVERAL}\n")
    fields = load_sweep_spec(path)
    fields.pop("batch_size")
    grid = SweepGrid(**fields)
    assert [r.label for r in grid.patch_recipes()] == ["qresafe", "qresafe-tuned", "sft-tuned"]
    plan = [(c.spec.slug, c.kind, c.recipe.label if c.recipe else None) for c in cells(grid)]
    assert plan[:5] == [("m", "base", None), ("m_rtn_w4", "quantized", None),
                        ("m_rtn_w4_qresafe", "patched", "qresafe"),
                        ("m_rtn_w4_qresafe-tuned", "patched", "qresafe-tuned"),
                        ("m_rtn_w4_sft-tuned", "patched", "sft-tuned")]
    assert [slug for slug, _, _ in plan[5:]] == ["m_bnb-nf4_w4", "m_bnb-nf4_w4_qresafe", "m_bnb-nf4_w4_qresafe-tuned",
                                                 "m_bnb-nf4_w4_sft-tuned"]
    with pytest.raises(SweepSpecError, match="3 recipes"):
        grid.patch_recipe()  # no single recipe to answer with


def test_the_single_recipe_forms_keep_working(tmp_path: Path) -> None:
    single = SweepGrid(model="m", methods=("rtn",), bits=(4,), patch=(("method", "qresafe"), ("recipe", "tuned")))
    assert single.patch_recipe().label == "qresafe-tuned" and [r.label for r in single.patch_recipes()] == [
        "qresafe-tuned"]
    assert [c.spec.slug for c in cells(single)] == ["m", "m_rtn_w4", "m_rtn_w4_qresafe-tuned"]
    path = tmp_path / "sweep.yaml"
    for patch, labels in (("true", ["qresafe"]), ("{recipe: tuned}", ["qresafe-tuned"]), ("false", []),
                          ("[{method: sft}]", ["sft"])):
        path.write_text(f"model: m\nquant: rtn\nbits: 4\npatch: {patch}\n")
        fields = load_sweep_spec(path)
        fields.pop("batch_size")
        assert [r.label for r in SweepGrid(**fields).patch_recipes()] == labels, patch


def test_bad_recipe_lists_fail_in_one_line_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("model: m\nquant: rtn\nbits: 4\npatch: [{recipe: paper}, {recipe: nope}]\n")
    with pytest.raises(SweepSpecError, match=r"patch\[1\]: unknown --recipe 'nope'") as info:
        load_sweep_spec(path)
    assert "\n" not in str(info.value)
    path.write_text("model: m\nquant: rtn\nbits: 4\npatch: [{recipe: tuned}, {method: qresafe, recipe: tuned}]\n")
    fields = load_sweep_spec(path)
    fields.pop("batch_size")
    with pytest.raises(SweepSpecError, match="same label twice: qresafe-tuned"):
        SweepGrid(**fields)
    path.write_text("model: m\nquant: rtn\nbits: 4\npatch: [tuned]\n")
    with pytest.raises(SweepSpecError, match="patch"):
        load_sweep_spec(path)


def test_each_patched_cell_is_built_with_its_own_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_sweep hands every patched cell its own recipe and evaluates it; the quantized parent is resolved
    once, and each patched cell holds its parent's lock (so it is patched from a finished variant)."""
    import fcntl

    from qresafe_bench.harness.models import registry
    from qresafe_bench.harness.runs import sweep
    from qresafe_bench.harness.runs.evaluate import EvalOutcome
    from qresafe_bench.qresafe import patch

    patched, evaluated, resolved = [], [], []

    def locked(spec) -> bool:
        fd = os.open(tmp_path / "locks" / f"{spec.id}.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def fake_patch(request, **_):
        patched.append((request.spec.slug, request.recipe.label, locked(request.spec), locked(request.patched_spec)))

    monkeypatch.setattr(patch, "run_patch", fake_patch)
    monkeypatch.setattr(registry, "resolve", lambda spec, **_: resolved.append(spec.slug))
    monkeypatch.setattr(sweep, "run_eval", lambda request, **_: (
        evaluated.append(request.spec.slug) or EvalOutcome({"tasks": {}}, tmp_path, from_store=False)))
    grid = SweepGrid(model="m", methods=("rtn",), bits=(4,), tasks=("advbench",),
                     patch=((("recipe", "paper"),), (("recipe", "tuned"),), (("method", "sft"), ("recipe", "tuned"))))
    planned = run_sweep(grid, home=tmp_path, data_dir=None, backend=BackendSettings(), log=lambda _: None,
                        keep_going=False)
    assert resolved == ["m_rtn_w4"]
    assert patched == [("m_rtn_w4", "qresafe", True, True), ("m_rtn_w4", "qresafe-tuned", True, True),
                       ("m_rtn_w4", "sft-tuned", True, True)]
    assert evaluated == ["m", "m_rtn_w4", "m_rtn_w4_qresafe", "m_rtn_w4_qresafe-tuned", "m_rtn_w4_sft-tuned"]
    assert [c.spec.patch for c in planned] == ["none", "none", "qresafe", "qresafe-tuned", "sft-tuned"]


def test_sweep_header_names_every_patch_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              run_cli) -> None:
    from qresafe_bench.harness.runs import sweep

    monkeypatch.setattr(sweep, "run_sweep", lambda grid, **_: list(cells(grid)))  # the plan, nothing run
    spec, out = tmp_path / "sweep.yaml", tmp_path / "grid.md"
    spec.write_text(f"model: m\nquant: rtn\nbits: 4\ntasks: advbench\npatch: {SEVERAL}\n")
    code, stdout, _ = run_cli(["sweep", "--spec", str(spec), "--out", str(out), "--home", str(tmp_path / "home")])
    assert code == 0
    assert "Patches: qresafe, qresafe-tuned, sft-tuned." in out.read_text()
    assert stdout.count("| not run |") == 5  # the base, the quantized cell and its three patched cells


def test_an_interrupted_sweep_leaves_the_table_of_its_finished_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     run_cli) -> None:
    from qresafe_bench.harness.models import registry
    from qresafe_bench.harness.runs import sweep
    from qresafe_bench.harness.runs.evaluate import EvalOutcome

    asr = {"value": 0.25, "ci95_low": 0.1, "ci95_high": 0.5, "n": 8}
    evaluated: list[str] = []

    def evaluate(request, **_):
        if evaluated:
            raise KeyboardInterrupt  # ^C during the second cell
        evaluated.append(request.spec.slug)
        results = {"tasks": {"advbench": {"metrics": {"asr": asr, "affirmative": asr}}},
                   "model": {"location": "/store/zoo/m-build1"}, "wall_seconds": 42.4}
        return EvalOutcome(results, tmp_path, from_store=False)

    monkeypatch.setattr(registry, "resolve", lambda spec, **_: None)
    monkeypatch.setattr(sweep, "run_eval", evaluate)
    spec, out = tmp_path / "sweep.yaml", tmp_path / "grid.md"
    spec.write_text("model: m\nquant: rtn\nbits: [4, 2]\ntasks: advbench\n")
    code, _, _ = run_cli(["sweep", "--spec", str(spec), "--out", str(out), "--home", str(tmp_path / "home")])
    assert code != 0 and evaluated == ["m"]
    table = out.read_text()
    assert "In progress or interrupted" in table and "25.0" in table and "Model build: `m-build1`" in table
    assert "the finished cells' evaluations took 42 s when they ran" in table
    assert table.count("| not run |") == 2  # the 4-bit cell cut short and the 2-bit cell never started
